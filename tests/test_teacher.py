"""The teacher client against a scripted OpenAI-compatible server (tests/scripted_teacher.py).

A real teacher is a remote LLM API, which cannot run here; the scripted server speaks the
same HTTP protocol, so concurrency, retries, error handling and the resumable cache are real.
"""

import pytest

from contracts.settings import TeacherConfig
from tests.scripted_teacher import ScriptedTeacher
from training.teacher import Teacher, TeacherError

CHUNKS = [(f"Manual {n}", f"The unit U{n} weighs {n + 10} kg. It ships in a box of {n + 2} parts.") for n in range(6)]


def make_teacher(server, cache, **overrides) -> Teacher:
    prompts = {key: overrides.pop(key) for key in ("question_prompt", "answer_prompt") if key in overrides}
    config = TeacherConfig(url=server.url, model="scripted", concurrency=3, max_retries=2, **overrides)
    return Teacher(config, cache, retry_base_s=0.01, **prompts)


def test_questions_are_parsed_from_the_reply(tmp_path):
    with ScriptedTeacher() as server:
        pairs = make_teacher(server, tmp_path / "cache.jsonl").questions(CHUNKS[:2])
    assert [a for _, a in pairs[0]] == ["10 kg", "2 parts"]
    assert all(q.endswith("?") for q, _ in pairs[1])


def test_an_interrupted_run_resumes_without_repeating_calls(tmp_path):
    cache = tmp_path / "cache.jsonl"
    with ScriptedTeacher(fail_after=4) as server:
        with pytest.raises(TeacherError, match="4 of 6 new calls finished and cached; rerun to resume"):
            make_teacher(server, cache).questions(CHUNKS)
    with ScriptedTeacher() as server:
        teacher = make_teacher(server, cache)
        pairs = teacher.questions(CHUNKS)
        assert server.requests == 2  # only the calls the outage cut off
        assert teacher.stats.cached == 4
    assert all(len(p) == 2 for p in pairs)
    with ScriptedTeacher() as server:
        make_teacher(server, cache).questions(CHUNKS)
        assert server.requests == 0  # everything answered from the cache


def test_server_errors_are_retried_then_reported(tmp_path):
    with ScriptedTeacher(status=503) as server:
        with pytest.raises(TeacherError, match="HTTP 503.*gave up after 3 tries"):
            make_teacher(server, tmp_path / "c.jsonl").questions(CHUNKS[:1])
        assert server.requests == 3


def test_refused_credentials_fail_at_once_with_a_hint(tmp_path):
    with ScriptedTeacher(status=401) as server:
        with pytest.raises(TeacherError, match="HTTP 401.*check teacher.api_key"):
            make_teacher(server, tmp_path / "c.jsonl").questions(CHUNKS[:1])
        assert server.requests == 1


def test_unreachable_teacher_names_the_url(tmp_path):
    config = TeacherConfig(url="http://127.0.0.1:9/v1", model="m", max_retries=0)
    with pytest.raises(TeacherError, match="teacher: cannot reach http://127.0.0.1:9/v1"):
        Teacher(config, tmp_path / "c.jsonl").questions(CHUNKS[:1])


def test_a_cache_line_cut_by_a_crash_is_ignored(tmp_path):
    cache = tmp_path / "cache.jsonl"
    with ScriptedTeacher() as server:
        make_teacher(server, cache).questions(CHUNKS[:2])
    cache.write_text(cache.read_text() + '{"key": "abc", "rep')
    with ScriptedTeacher() as server:
        make_teacher(server, cache).questions(CHUNKS[:2])
        assert server.requests == 0


def test_prompt_templates_from_config_are_checked(tmp_path):
    from flows.config import ConfigError, load_config
    from flows.wiring import make_teacher

    template = tmp_path / "q.txt"
    template.write_text("Write {n} questions about {passage}")
    cfg = load_config(None, {"teacher.url": "http://x/v1", "teacher.model": "m", "teacher.question_prompt": str(template)}, environ={})
    with pytest.raises(ConfigError, match=r"teacher.question_prompt: .*unknown placeholder\(s\) passage; available: n, text, title"):
        make_teacher(cfg)
    template.write_text("Write {n} questions about {text}")
    assert make_teacher(cfg).question_prompt == "Write {n} questions about {text}"
    with pytest.raises(ConfigError, match="teacher.model is not"):
        make_teacher(load_config(None, {"teacher.url": "http://x/v1"}, environ={}))


def test_a_reply_that_is_no_chat_completion_is_a_clear_error_not_a_crash():
    """A server that answers 200 without a completion (a wrong URL or API): named, with the status the
    teacher does not retry. httpx.MockTransport stands in for such a server."""
    import httpx
    import openai

    from contracts.generation import GenerationError, Sampling, complete

    for reply in (httpx.Response(200, json={"status": "ok"}), httpx.Response(200, text="<html>login</html>")):
        client = openai.OpenAI(base_url="http://teacher.test/v1", api_key="k", max_retries=0,
                               http_client=httpx.Client(transport=httpx.MockTransport(lambda _, r=reply: r)))
        with pytest.raises(GenerationError, match="http://teacher.test/v1 did not return an OpenAI chat completion") as e:
            complete(client, "m", [{"role": "user", "content": "hi"}], Sampling())
        assert e.value.status == 200
