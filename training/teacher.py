"""A teacher LLM behind any OpenAI-compatible endpoint: questions per chunk, and reasoning.

Calls run concurrently, are retried with exponential backoff on rate limits, server errors
and dropped connections, and every answer is appended to a cache file as soon as it
arrives. The cache key is the request itself (model, messages, sampling), so an interrupted
run, rerun, pays only for the calls it has not made yet.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from contracts.generation import GenerationError, Sampling, complete, model_client
from contracts.prompt import ANSWER_PREFIX, BEGIN_QUOTE, END_QUOTE
from contracts.settings import TeacherConfig

QUESTION_PROMPT = """Below is a passage from the document "{title}".
Write {n} different questions that a reader of this document could ask and that this passage answers on its own.
Name the product, version, region or policy in each question so that it has one right answer.
Each answer must be short (a few words, a number with its unit, a name or a code) and copied from the passage.
Reply with JSON only: a list of objects with the keys "question" and "answer".

Passage:
{text}"""

ANSWER_PROMPT = f"""Question: {{question}}

Document "{{title}}":
{{text}}
{{reference}}
Explain step by step how the document answers the question. Copy every sentence you rely on word for word between {BEGIN_QUOTE} and {END_QUOTE}. End with a last line of the form "{ANSWER_PREFIX} <short answer>"."""


class TeacherError(RuntimeError):
    """The teacher cannot be used (unreachable, refused, out of retries); finished calls stay cached."""


@dataclass
class TeacherStats:
    calls: int = 0  # requests sent (retries included)
    cached: int = 0  # answers read from the cache
    retries: int = 0
    unparseable: int = 0  # question replies that held no usable JSON list


@dataclass
class Teacher:
    """Client for one teacher model; `cache_file` makes its work resumable."""

    config: TeacherConfig  # with url and model set
    cache_file: Path
    question_prompt: str = QUESTION_PROMPT  # placeholders: {title} {text} {n}
    answer_prompt: str = ANSWER_PROMPT  # placeholders: {title} {text} {question} {reference}
    retry_base_s: float = 1.0  # first backoff; doubles per retry, with jitter
    stats: TeacherStats = field(default_factory=TeacherStats)

    def __post_init__(self) -> None:
        if not self.config.url or not self.config.model:
            raise TeacherError("a teacher needs teacher.url and teacher.model: name the endpoint and the model it serves")
        self._lock = threading.Lock()
        self._cache = _read_cache(self.cache_file)

    def questions(self, chunks: list[tuple[str, str]], progress: bool = False) -> list[list[tuple[str, str]]]:
        """(question, answer) pairs for each (title, text) chunk; [] where the reply was unusable."""
        s = self.config
        prompts = [self.question_prompt.format(title=title, text=text, n=s.questions_per_chunk) for title, text in chunks]
        replies = self.complete_many([[{"role": "user", "content": p}] for p in prompts], "teacher questions", progress)
        pairs = []
        for reply in replies:
            found = _question_pairs(reply)
            self.stats.unparseable += found is None
            pairs.append((found or [])[: s.questions_per_chunk])
        return pairs

    def reasoning(self, items: list[tuple[str, str, str, str | None]], progress: bool = False) -> list[str]:
        """A chain-of-thought answer for each (question, title, oracle text, reference answer or None)."""
        messages = []
        for question, title, text, reference in items:
            ref = f"\nReference answer: {reference}\n" if reference else ""
            content = self.answer_prompt.format(question=question, title=title, text=text, reference=ref)
            messages.append([{"role": "user", "content": content}])
        return self.complete_many(messages, "teacher answers", progress)

    def complete_many(self, requests: list[list[dict[str, str]]], label: str = "teacher", progress: bool = False) -> list[str]:
        """The reply to each chat request, from the cache or the endpoint, in request order.

        Raises TeacherError when a call fails for good; every reply received before that is
        already cached, so the next run resumes where this one stopped.
        """
        from tqdm import tqdm

        keys = [self._key(messages) for messages in requests]
        replies: dict[str, str] = {key: self._cache[key] for key in keys if key in self._cache}
        self.stats.cached += sum(key in replies for key in keys)
        todo = {key: messages for key, messages in zip(keys, requests) if key not in replies}
        if todo:
            with (
                model_client(self.config.url, self.config.timeout_s, self.config.api_key) as client,
                ThreadPoolExecutor(max_workers=self.config.concurrency) as pool,
                tqdm(total=len(todo), desc=label, unit="call", disable=not progress) as bar,
            ):
                futures = {pool.submit(self._complete, client, key, messages): key for key, messages in todo.items()}
                failure: TeacherError | None = None
                for future in as_completed(futures):
                    if future.cancelled():
                        continue
                    try:
                        replies[futures[future]] = future.result()
                    except TeacherError as e:
                        # Stop sending; calls already in flight finish and are cached.
                        failure = failure or e
                        for pending in futures:
                            pending.cancel()
                        continue
                    bar.update()
            if failure is not None:
                done = sum(key in replies for key in todo)
                raise TeacherError(f"{failure} ({done} of {len(todo)} new calls finished and cached; rerun to resume)")
        return [replies[key] for key in keys]

    # --- one call --------------------------------------------------------------------------

    def _key(self, messages: list[dict[str, str]]) -> str:
        s = self.config
        blob = json.dumps({"model": s.model, "messages": messages, "temperature": s.temperature, "max_tokens": s.max_tokens}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _complete(self, client: openai.OpenAI, key: str, messages: list[dict[str, str]]) -> str:
        s = self.config
        sampling = Sampling(max_tokens=s.max_tokens, temperature=s.temperature)
        for attempt in range(s.max_retries + 1):
            with self._lock:
                self.stats.calls += 1
            wait = _retry_wait(attempt, self.retry_base_s)
            try:
                reply = complete(client, s.model, messages, sampling).text
            except GenerationError as e:
                problem = f"teacher: {e}"
                if e.status is not None and e.status not in (408, 409, 429) and e.status < 500:
                    hint = " (check teacher.api_key)" if e.status in (401, 403) else ""
                    raise TeacherError(problem + hint) from None
                wait = max(wait, e.retry_after)
            else:
                self._store(key, reply)  # here, not in the caller: survives an interrupt of the caller
                return reply
            if attempt == s.max_retries:
                raise TeacherError(f"{problem}; gave up after {s.max_retries + 1} tries")
            with self._lock:
                self.stats.retries += 1
            time.sleep(wait)
        raise AssertionError("unreachable")

    # --- cache -----------------------------------------------------------------------------

    def _store(self, key: str, reply: str) -> None:
        with self._lock:
            self._cache[key] = reply
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            with self.cache_file.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "reply": reply}) + "\n")


def _read_cache(path: Path) -> dict[str, str]:
    cache: dict[str, str] = {}
    if not path.is_file():
        return cache
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            cache[record["key"]] = record["reply"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a crash: that call is simply made again
    return cache


def _retry_wait(attempt: int, base: float) -> float:
    return min(base * 2**attempt, 60.0) * (0.5 + random.random() / 2)


_JSON_LIST = re.compile(r"\[.*\]", re.S)


def _question_pairs(reply: str) -> list[tuple[str, str]] | None:
    """(question, answer) pairs from a reply holding a JSON list, tolerating prose around it."""
    match = _JSON_LIST.search(reply)
    if not match:
        return None
    try:
        items: Any = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    pairs = [
        (item["question"].strip(), item["answer"].strip())
        for item in items
        if isinstance(item, dict) and isinstance(item.get("question"), str) and isinstance(item.get("answer"), str)
        and item["question"].strip() and item["answer"].strip()
    ]
    return pairs or None
