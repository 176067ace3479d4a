"""Each loader on real files, and each kind of bad file."""

import warnings

import pytest
from conftest import HEATER_P1, KB_JSONL, PUMP_MD, WARRANTY_HTML, make_pdf

from retrieval.documents import LoadError, NotADocument, decode_text, parse_file, parse_jsonl

PUBLIC = ("public",)


def section_texts(doc):
    return [(s.headings, doc.text[s.start : s.end]) for s in doc.sections]


def test_markdown_front_matter_title_headings_and_sections():
    [doc] = parse_file(PUMP_MD.encode(), "guides/pump.md", {}, PUBLIC)
    assert doc.doc_id == doc.source == "guides/pump.md"
    assert doc.title == "Pump P200 Guide"
    assert doc.access == PUBLIC
    assert doc.metadata == {"owner": "plant-ops"}
    assert not doc.text.startswith("---")
    sections = section_texts(doc)
    assert [h for h, _ in sections] == [
        ("Pump P200 Guide",),
        ("Pump P200 Guide", "Installation"),
        ("Pump P200 Guide", "Maintenance"),
        ("Pump P200 Guide", "Maintenance", "Error codes"),
    ]
    assert sections[3][1].startswith("### Error codes")
    assert "".join(t for _, t in sections) == doc.text  # sections tile the text


def test_markdown_access_from_front_matter_and_sidecar_wins():
    md = b"---\naccess: [hr, finance]\n---\n# Pay\nBands.\n"
    [doc] = parse_file(md, "pay.md", {}, PUBLIC)
    assert doc.access == ("finance", "hr") and doc.title == "Pay"
    [doc] = parse_file(md, "pay.md", {"access": ["board"], "title": "Board pay"}, PUBLIC)
    assert doc.access == ("board",) and doc.title == "Board pay"


def test_markdown_headings_in_code_fences_are_not_sections():
    md = b"# Title\ntext\n```\n# not a heading\n```\n## Real\nmore\n"
    [doc] = parse_file(md, "a.md", {}, PUBLIC)
    assert [s.headings for s in doc.sections] == [("Title",), ("Title", "Real")]


def test_txt_title_is_first_line():
    [doc] = parse_file(b"\n  Release notes 1.4\nBody text.\n", "notes.txt", {}, PUBLIC)
    assert doc.title == "Release notes 1.4"
    assert "Body text." in doc.text


def test_html_strips_boilerplate_and_keeps_structure():
    [doc] = parse_file(WARRANTY_HTML.encode(), "web/warranty.html", {}, PUBLIC)
    assert doc.title == "Warranty terms"
    for boilerplate in ("do-not-index", "color:red", "Shop", "cookies", "Copyright", "Products"):
        assert boilerplate not in doc.text
    assert "Every pump carries a five-year warranty from the date of purchase." in doc.text
    assert "Motor | 5" in doc.text
    claims = [s for s in doc.sections if s.headings == ("Warranty terms", "Claims")]
    assert claims and doc.text[claims[0].start :].startswith("Claims\nSend claims")


# The chrome of two documentation generators that use no <nav> or <aside>: Node.js's API docs
# (a menu and a table of contents as <div>/<details role="navigation">, '#' permalinks, an
# example's CommonJS and ES module versions as two <code>s in one <pre>) and Sphinx (sidebars
# with role="navigation", '¶' permalinks on headings and definitions).
API_DOCS_HTML = """<html><head><title>Path | Node.js v20 Documentation</title></head><body>
<a href="#apicontent" class="skip-to-content">Skip to content</a>
<div role="navigation" id="column2"><ul><li><a href="fs.html">File system</a></li></ul></div>
<div id="column1"><details role="navigation" id="toc" open><summary>Table of contents</summary>
<ul><li><a href="#path-sep">path.sep</a></li></ul></details>
<div id="apicontent"><section><h2>Path<span><a class="mark" href="#path" id="path">#</a></span></h2>
<pre><input type="checkbox" aria-label="Show ES modules syntax"><code class="cjs">const path = require('node:path');</code><code class="mjs">import path from 'node:path';</code></pre>
<h3>path.sep<a class="headerlink" href="#path-sep" title="Link to this heading">\u00b6</a></h3>
<p>Provides the platform-specific path segment separator: see <a href="#path">the module</a>.</p>
<div class="sphinxsidebar" role="navigation"><h3>Quick search</h3></div>
<div role="contentinfo">Last updated on Dec 05, 2026.</div>
</section></div></div></body></html>"""


def test_html_drops_landmark_chrome_and_permalinks():
    [doc] = parse_file(API_DOCS_HTML.encode(), "api/path.html", {}, PUBLIC)
    for chrome in ("Skip to content", "File system", "Table of contents", "Quick search", "Last updated", "#", "\u00b6"):
        assert chrome not in doc.text
    assert doc.title == "Path"
    assert [s.headings for s in doc.sections if s.headings] == [("Path",), ("Path", "path.sep")]
    assert "const path = require('node:path');\nimport path from 'node:path';" in doc.text
    assert "Provides the platform-specific path segment separator: see the module." in doc.text


DOXYGEN_PAGE = (
    b'<html><head><title>Pool: pool.h File Reference</title></head><body><div id="top"><div id="titlearea"><table><tr>'
    b'<td><div id="projectname">Pool</div></td></tr></table></div></div><div class="header"><div class="headertitle">'
    b'<div class="title">pool.h File Reference</div></div></div><div class="contents"><h2 class="groupheader">Functions</h2>'
    b'<p>Creates a pool.</p><div class="memproto"><table class="memname"><tr><td class="memname">void pool_shutdown </td>'
    b'\n<td>(</td>\n<td class="paramtype">pool_t *&#160;</td><td class="paramname"><em>p</em>, </td></tr>\n<tr><td class="paramkey"></td>'
    b'<td></td><td class="paramtype">int&#160;</td><td class="paramname"><em>seconds</em>&#160;</td></tr>\n<tr><td></td><td>)</td>'
    b'<td></td><td></td></tr></table></div></div><hr class="footer"/><address class="footer"><small>Generated by 1.9.4</small></address>'
    b'</body></html>'
)

# What other documentation generators' pages read as. Each case failed before its fix (the laid-out
# page on the first version of the table-row fix, which joined every cell's blocks).
GENERATOR_PAGES = [
    pytest.param(  # Sphinx wraps every cell's text in a <p>; Node.js's version tables some; cells break lines with <br>
        b'<html><body><h1>Profiles</h1><table class="docutils"><thead><tr><th><p>Option</p></th><th><p>Default</p></th></tr></thead>'
        b'<tbody><tr><td><p><code>opt-level</code></p></td><td><p>0</p><p>(3 for release)</p></td></tr>'
        b'<tr><td>cargo run,<br>cargo build</td><td><ul><li>dev</li><li>test</li></ul></td></tr></tbody></table>'
        b'<p>After the table.</p></body></html>',
        "Profiles\nOption | Default\nopt-level | 0 (3 for release)\ncargo run, cargo build | dev test\nAfter the table.",
        id="a table row is one line whatever its cells hold",
    ),
    pytest.param(  # old sites (libxslt's) box their text in one-cell tables and set the menu beside the content
        b'<html><body><table><tr><td><ul><li>Home</li><li>FAQ</li></ul></td>'
        b'<td><h1>Bugs</h1><table><tr><td><p>Report bugs on the list.</p><p>Attach the stylesheet.</p></td></tr></table>'
        b'</td></tr></table></body></html>',
        "- Home\n- FAQ\nBugs\nReport bugs on the list.\nAttach the stylesheet.",
        id="a page laid out in tables keeps its lines",
    ),
    pytest.param(  # Read the Docs' permalink glyph (U+F0C1); footnotes' back-links: unclassed (mdBook), classed (GitHub), by role
        # (Pandoc); a footnote's bare number, a superscript link, would run into the word before it
        '<html><body><h1>Install<a class="headerlink" href="#install">\uf0c1</a></h1>'
        '<p>Run the installer<sup><a href="#fn-1" id="fr-1">1</a></sup>.</p><ol>'
        '<li id="fn-1"><p>As root. <a href="#fr-1">\u21a9</a> <a href="#fr-1-2">\u21a92</a></p></li>'
        '<li><p>Or sudo. <a href="#r2" class="data-footnote-backref">\u21a9<sup>2</sup></a>'
        ' <a href="#r3" role="doc-backlink">back</a> See <a href="#install">Install</a>.</p></li></ol></body></html>'.encode(),
        "Install\nRun the installer.\n- As root.\n- Or sudo. See Install.",
        id="icon permalinks and footnotes' back-links are chrome",
    ),
    pytest.param(  # MkDocs Material: a numbered code block is a table (Pygments' gutter, then the code); content tabs' labels
        b'<html><body><h1>Start</h1><div class="tabbed-set"><div class="tabbed-labels"><label for="t1">Linux</label>'
        b'<label for="t2">Windows</label></div><div class="tabbed-content"><div class="tabbed-block"><p>Run start.sh.</p></div>'
        b'<div class="tabbed-block"><p>Run start.bat.</p></div></div></div>'
        b'<div class="highlight"><table class="highlighttable"><tr><td class="linenos"><div class="linenodiv"><pre>'
        b'<span class="normal">1</span>\n<span class="normal">2</span></pre></div></td><td class="code"><div><pre><code>'
        b'import worker\nworker.start()\n</code></pre></div></td></tr></table></div></body></html>',
        "Start\nLinux\nRun start.sh.\nWindows\nRun start.bat.\nimport worker\nworker.start()",
        id="code beside its line numbers, and content tabs",
    ),
    pytest.param(  # ids are mostly headings' anchors (Sphinx's <section id="menu"> is the section "Menu"); Sphinx's menu
        # paths are text; Docusaurus' page contents and "Edit this page" go by class
        b'<html><body><main><article><header><h1>Sessions</h1></header>'
        b'<section id="menu"><h2>Menu</h2><p>Pick <span class="menuselection">File \xe2\x80\xa3 Save</span>.</p></section>'
        b'<div class="section" id="cookies"><h2>Cookies</h2></div><h2 id="shared-cache">Shared cache</h2><p>One cache.</p>'
        b'<footer><a class="theme-edit-this-page" href="https://example.com/edit">Edit this page</a></footer></article>'
        b'<div class="tableOfContents_x"><ul class="table-of-contents"><li><a href="#menu">Menu</a></li></ul></div>'
        b'<div id="sidebar-links"><a href="/a">All pages</a></div><div id="main-menu">Home</div></main></body></html>',
        "Sessions\nMenu\nPick File \u2023 Save.\nCookies\nShared cache\nOne cache.",
        id="an id names chrome only as a whole word and never a section",
    ),
    pytest.param(
        b'<html><body><h2><code>-h</code>/<code>--help</code>: help<br>and usage</h2><p>Prints help.</p></body></html>',
        "-h/--help: help and usage\nPrints help.",
        id="a heading's text as written",
    ),
    pytest.param(  # Markdown's loose lists and Sphinx put an item's text in a <p>: it is an item all the same
        b'<html><body><ul><li><p>Build it:</p><pre>cargo build</pre><p>then run it.</p></li><li><pre>cargo test</pre></li>'
        b'<li><ul><li><p>Nested.</p></li></ul></li><li>Tight <em>item</em>.</li></ul><p>After the list.</p></body></html>',
        "- Build it:\ncargo build\nthen run it.\ncargo test\n- Nested.\n- Tight item.\nAfter the list.",
        id="a list item's text in a paragraph keeps its marker",
    ),
    pytest.param(  # javadoc (JDK 16 and later): a summary is a grid of <div> cells, its column count in a class
        b'<html><body><h2>Method Summary</h2><div class="summary-table three-column-summary">'
        b'<div class="table-header col-first">Modifier and Type</div><div class="table-header col-second">Method</div>'
        b'<div class="table-header col-last">Description</div><div class="col-first even-row-color"><code>void</code></div>'
        b'<div class="col-second even-row-color"><code><a href="#shutdown(int)">shutdown</a>(int&nbsp;seconds)</code></div>'
        b'<div class="col-last even-row-color"><div class="block">Stops every worker.</div></div>'
        b'<div class="col-first odd-row-color"><code>boolean</code></div><div class="col-second odd-row-color">submit()</div>'
        b'<div class="col-last odd-row-color"><div class="block">Submits a task.</div></div></div></body></html>',
        "Method Summary\nModifier and Type | Method | Description\nvoid | shutdown(int seconds) | Stops every worker.\n"
        "boolean | submit() | Submits a task.",
        id="a javadoc summary grid reads as a table",
    ),
    pytest.param(  # pydoc indents a class's text with an empty cell beside it: a row of one cell with text is layout
        b'<html><body><table><tr><td colspan=2>class <strong>Pool</strong></td></tr><tr><td><span class="code">&nbsp;&nbsp;</span></td>'
        b'<td><span class="code">Pool(size)<br>&nbsp;<br>A pool of workers.<br>size: how many</span></td></tr>'
        b'<tr><td>&nbsp;</td><td><dl><dt>Methods defined here:</dt><dd>submit(task)</dd></dl></td></tr></table></body></html>',
        "class Pool\nPool(size)\nA pool of workers.\nsize: how many\nMethods defined here:\nsubmit(task)",
        id="text beside empty cells keeps its lines",
    ),
    pytest.param(  # Doxygen: the project's name atop every page, the page's heading a <div>, a footer by class,
        # a function's signature laid out as a table
        DOXYGEN_PAGE, "pool.h File Reference\nFunctions\nCreates a pool.\nvoid pool_shutdown ( pool_t * p, int seconds )",
        id="Doxygen's page heading, title area, footer and signatures",
    ),
    pytest.param(  # Docusaurus: a heading's class names the sticky navbar; a line of code ends with a <br>
        '<html><body><main><article><h1>Intro</h1><h2 class="anchor anchorWithStickyNavbar_LWe7" id="start">Start your site'
        '<a href="#start" class="hash-link" aria-label="Direct link to Start your site">\u200b</a></h2><div class="codeBlockContainer">'
        '<pre class="prism-code"><code class="codeBlockLines"><span class="token-line"><span class="token plain">cd my-website</span>'
        '<br></span><span class="token-line"><span class="token plain">npm run start</span><br></span></code></pre></div>'
        '</article></main></body></html>'.encode(),
        "Intro\nStart your site\ncd my-website\nnpm run start",
        id="Docusaurus' headings and code lines",
    ),
    pytest.param(  # Hugo's Doks theme: Bootstrap's tabs (labels as <button>s in a <nav>, each naming its panel), a
        # footnote's number (Goldmark), the links to the previous and next page
        b'<html><body><main><h1>Install</h1><nav><div class="nav nav-tabs" role="tablist">'
        b'<button class="nav-link active" role="tab" aria-controls="tabs-0">Debian</button>'
        b'<button class="nav-link" role="tab" aria-controls="tabs-1">Red Hat</button></div></nav><div class="tab-content">'
        b'<div class="tab-pane" id="tabs-1" role="tabpanel"><pre><code>dnf install pw</code></pre></div>'
        b'<div class="tab-pane active" id="tabs-0" role="tabpanel"><pre><code>apt install pw</code></pre></div></div>'
        b'<p>Logs rotate daily<sup id="fnref:1"><a href="#fn:1" class="footnote-ref" role="doc-noteref">1</a></sup>.</p>'
        b'<div class="footnotes" role="doc-endnotes"><ol><li id="fn:1"><p>At midnight.</p></li></ol></div>'
        b'<div class="page-nav d-flex"><div class="card"><div class="text-body-secondary">Prev</div>'
        b'<a href="/docs/settings/" class="stretched-link">Settings</a></div></div></main></body></html>',
        "Install\nRed Hat\ndnf install pw\nDebian\napt install pw\nLogs rotate daily.\n- At midnight.",
        id="Doks' tabs, footnotes and page links",
    ),
    pytest.param(  # Docusaurus' tabs: a list of labels, then the panels in the same order; a site's tabs that are links
        # to pages label no panel
        b'<html><body><div class="navbar"><ul role="tablist"><li role="tab"><a href="/docs/">Docs</a></li>'
        b'<li role="tab"><a href="/blog/">Blog</a></li></ul></div>'
        b'<main><h1>Install</h1><div class="tabs-container"><ul role="tablist" class="tabs">'
        b'<li role="tab" class="tabs__item tabs__item--active">npm</li><li role="tab" class="tabs__item">Yarn</li></ul>'
        b'<div class="margin-top--md"><div role="tabpanel" class="tabItem_Ymn6"><pre><code>npm i pw</code></pre></div>'
        b'<div role="tabpanel" class="tabItem_Ymn6" hidden><pre><code>yarn add pw</code></pre></div></div></div></main></body></html>',
        "Install\nnpm\nnpm i pw\nYarn\nyarn add pw",
        id="Docusaurus' tabs",
    ),
    pytest.param(  # tabs in a tab: each group labels its own panels
        b'<html><body><main><div class="tabs-container"><ul role="tablist"><li role="tab">Linux</li><li role="tab">macOS</li></ul>'
        b'<div><div role="tabpanel"><div class="tabs-container"><ul role="tablist"><li role="tab">x86</li><li role="tab">ARM</li></ul>'
        b'<div><div role="tabpanel"><p>Get pw-x86.</p></div><div role="tabpanel"><p>Get pw-arm.</p></div></div></div></div>'
        b'<div role="tabpanel"><p>Run brew install pw.</p></div></div></div></main></body></html>',
        "Linux\nx86\nGet pw-x86.\nARM\nGet pw-arm.\nmacOS\nRun brew install pw.",
        id="nested tabs",
    ),
    pytest.param(  # TypeDoc: a member's badge ("Optional") beside its name in the heading; the page's member index
        b'<html><body><div class="col-content"><div class="tsd-page-title"><h1>Interface PoolOptions</h1></div>'
        b'<section class="tsd-panel-group tsd-index-group"><section class="tsd-panel tsd-index-panel"><details class="tsd-index-content">'
        b'<summary><h5 class="tsd-index-heading uppercase">Index</h5></summary><section class="tsd-index-section">'
        b'<h3 class="tsd-index-heading">Properties</h3><div class="tsd-index-list"><a href="#maxworkers" class="tsd-index-link">'
        b'<span>max<wbr/>Workers?</span></a></div></section></details></section></section><section class="tsd-panel-group tsd-member-group">'
        b'<h2>Properties</h2><section class="tsd-panel tsd-member"><h3 class="tsd-anchor-link" id="maxworkers"><code class="tsd-tag">'
        b'Optional</code><span>max<wbr/>Workers</span></h3><div class="tsd-signature">maxWorkers?: number</div>'
        b'<p>How many workers run at once.</p></section></section></div></body></html>',
        "Interface PoolOptions\nProperties\nOptional maxWorkers\nmaxWorkers?: number\nHow many workers run at once.",
        id="TypeDoc's member badges and index",
    ),
    pytest.param(  # pdoc: every module, class and function carries its source code behind a "View Source" toggle; a
        # docstring's example is a code block of the same class, and stays
        b'<html><body><main><section class="module-info"><h1 class="modulename">pool</h1><div class="docstring"><p>A pool.</p></div>'
        b'<input id="mod-view-source" class="view-source-toggle-state" type="checkbox"><label class="view-source-button" '
        b'for="mod-view-source"><span>View Source</span></label><div class="pdoc-code codehilite"><pre>"""A pool."""\nclass Pool: ...'
        b'</pre></div></section><section id="Pool"><input id="Pool-view-source" class="view-source-toggle-state" type="checkbox">'
        b'<div class="attr class">class Pool: <label class="view-source-button" for="Pool-view-source">View Source</label></div>'
        b'<div class="pdoc-code codehilite"><pre>class Pool:\n    """Runs tasks."""</pre></div><div class="docstring"><p>Runs tasks.</p>'
        b'<div class="pdoc-code codehilite"><pre>&gt;&gt;&gt; Pool()</pre></div></div></section></main></body></html>',
        "pool\nA pool.\nclass Pool:\nRuns tasks.\n>>> Pool()",
        id="pdoc's source views",
    ),
    pytest.param(  # mdBook hides a Rust example's boilerplate lines until the reader asks for them
        b'<html><body><main><h1>Tests</h1><pre class="playground"><code class="language-rust"><span class="boring">#![allow(unused)]\n'
        b'</span><span class="boring">fn main() {\n</span>let x = 5;\nassert_eq!(x, 5);\n<span class="boring">}</span></code></pre>'
        b'</main></body></html>',
        "Tests\nlet x = 5;\nassert_eq!(x, 5);",
        id="mdBook's hidden lines",
    ),
    pytest.param(  # Asciidoctor: a sidebar block is the page's text, the footer ("Last updated") is not; a bracketed
        # footnote number (Asciidoctor's, Sphinx's) reads as it is
        b'<html><body><div id="header"><h1>Agent Guide</h1><div id="toc" class="toc2"><ul><li>Installing</li></ul></div></div>'
        b'<div id="content"><div class="sidebarblock"><div class="content"><div class="title">Buffering</div><div class="paragraph">'
        b'<p>The oldest metrics go first.<sup class="footnote">[<a id="_footnoteref_1" class="footnote" href="#_footnotedef_1">1</a>]</sup>'
        b'</p></div></div></div><div class="paragraph"><p>See the tuple <a class="footnote-reference brackets" href="#f1" role="doc-noteref">'
        b'<span class="fn-bracket">[</span>2<span class="fn-bracket">]</span></a>.</p></div></div>'
        b'<div id="footer"><div id="footer-text">Last updated 2026-12-06 02:00:33 UTC</div></div></body></html>',
        "Agent Guide\nBuffering\nThe oldest metrics go first.[1]\nSee the tuple [2].",
        id="Asciidoctor's sidebars and footer",
    ),
    pytest.param(  # Sphinx (docutils 0.18 and later) writes footnotes and topics as <aside>s in the page's main
        # content, a note's number as its back-link
        b'<html><body><div class="body" role="main"><h1>Install</h1><p>Needs 2 GB <a class="footnote-reference brackets" '
        b'href="#f1" id="id1" role="doc-noteref"><span class="fn-bracket">[</span>1<span class="fn-bracket">]</span></a>.</p>'
        b'<aside class="topic"><p class="topic-title">Abstract</p><p>How to install.</p></aside><aside class="footnote-list brackets">'
        b'<aside class="footnote brackets" id="f1" role="doc-footnote"><span class="label"><span class="fn-bracket">[</span>'
        b'<a role="doc-backlink" href="#id1">1</a><span class="fn-bracket">]</span></span><p>4 GB with 200 agents.</p></aside>'
        b'</aside></div></body></html>',
        "Install\nNeeds 2 GB [1].\nAbstract\nHow to install.\n[1]\n4 GB with 200 agents.",
        id="Sphinx's footnotes and topics",
    ),
    pytest.param(  # outside the page's main content an <aside> is a site's sidebar
        b'<html><body><aside class="links"><p>Related pages</p></aside><h1>Pumps</h1><p>Pumps move water.</p></body></html>',
        "Pumps\nPumps move water.",
        id="an aside outside the content",
    ),
    pytest.param(  # Starlight (Astro): a heading's anchor and a code frame's title for screen readers only, notes as
        # <aside>s, tabs as links to their panels, the edit link and the page links in the page's own footer
        '<html><body><main><h1 id="_top">Install</h1><div class="sl-markdown-content"><div class="sl-heading-wrapper level-h2">'
        '<h2 id="package">Package</h2><a class="sl-anchor-link" href="#package"><span aria-hidden="true"></span>'
        '<span class="sr-only">Section titled \u201cPackage\u201d</span></a></div>'
        '<aside aria-label="Caution" class="starlight-aside starlight-aside--caution"><p class="starlight-aside__title">Caution</p>'
        '<div class="starlight-aside__content"><p>Check the clock first.</p></div></aside><starlight-tabs>'
        '<div class="tablist-wrapper not-content"><ul role="tablist"><li role="presentation" class="tab"><a role="tab" '
        'href="#tab-panel-0" id="tab-0">Debian</a></li><li role="presentation" class="tab"><a role="tab" href="#tab-panel-1" '
        'id="tab-1">Red Hat</a></li></ul></div><div id="tab-panel-0" aria-labelledby="tab-0" role="tabpanel"><figure class="frame '
        'is-terminal"><figcaption class="header"><span class="title"></span><span class="sr-only">Terminal window</span>'
        '</figcaption><pre><code>apt install pw</code></pre></figure></div><div id="tab-panel-1" aria-labelledby="tab-1" '
        'role="tabpanel" hidden><pre><code>dnf install pw</code></pre></div></starlight-tabs></div><footer class="sl-flex">'
        '<div class="meta sl-flex"><a href="https://github.com/x/y/edit/main/install.mdx" class="sl-flex">Edit page</a></div>'
        '<div class="pagination-links"><a href="/start/" rel="prev"><span>Previous<br><span class="link-title">Start</span>'
        '</span></a></div></footer></main></body></html>'.encode(),
        "Install\nPackage\nCaution\nCheck the clock first.\nDebian\napt install pw\nRed Hat\ndnf install pw",
        id="Starlight's pages",
    ),
    pytest.param(  # rustdoc (an API page, trimmed): a version and a "Source" link beside every item (before a method's
        # heading), a toggle's label, "Read more" links, and <div>s in a <pre> (an attribute) and a heading (a where clause)
        b'<html><body><main><section id="main-content" class="content"><div class="main-heading"><h1>Struct <span class="struct">Pool</span>'
        b'&nbsp;<button id="copy-path" title="Copy item path to clipboard">Copy item path</button></h1><span class="sub-heading">'
        b'<span class="since" title="Stable since Rust version 1.0.0">1.0.0</span> \xc2\xb7 <a class="src" href="../src/pool.rs.html#9">'
        b'Source</a> </span></div><pre class="rust item-decl"><code><div class="code-attribute">#[non_exhaustive]</div>pub struct '
        b'Pool&lt;T&gt; { <span class="comment">/* private fields */</span> }</code></pre><details class="toggle top-doc" open><summary class="hideme"><span>Expand description</span></summary>'
        b'<div class="docblock"><p>A pool of workers.</p></div></details><h2 id="trait-implementations" class="section-header">Trait '
        b'Implementations<a href="#trait-implementations" class="anchor">\xc2\xa7</a></h2><details class="toggle implementors-toggle" open>'
        b'<summary><section id="impl-Clone" class="impl"><a class="src rightside" href="../src/pool.rs.html#20">Source</a>'
        b'<h3 class="code-header">impl&lt;T&gt; Clone for Pool&lt;T&gt;<div class="where">where\n    T: Clone,</div></h3></section>'
        b'</summary><div class="docblock">Returns a copy of the value. <a href="../clone/trait.Clone.html#tymethod.clone">Read more</a>'
        b'</div></details><details class="toggle method-toggle" open><summary><section id="method.new" class="method"><span class="rightside">'
        b'<span class="since" title="Stable since Rust version 1.2.0">1.2.0</span> \xc2\xb7 <a class="src" href="../src/pool.rs.html#30">Source'
        b'</a></span><h4 class="code-header">pub fn new() -&gt; Pool</h4></section></summary><div class="docblock"><p>Creates a pool.</p>'
        b'</div></details></section></main></body></html>',
        "Struct Pool\nStable since Rust version 1.0.0\n#[non_exhaustive]\npub struct Pool<T> { /* private fields */ }\nA pool of workers.\n"
        "Trait Implementations\nimpl<T> Clone for Pool<T> where T: Clone,\nReturns a copy of the value.\n"
        "pub fn new() -> Pool\nStable since Rust version 1.2.0\nCreates a pool.",
        id="rustdoc's source links, toggles and where clauses",
    ),
    pytest.param(  # Sphinx's viewcode extension: a "[source]" link after every signature
        b'<html><body><div role="main"><dl class="py function"><dt class="sig sig-object py" id="pool.create"><span class="sig-prename '
        b'descclassname"><span class="pre">pool.</span></span><span class="sig-name descname"><span class="pre">create</span></span>'
        b'<span class="sig-paren">(</span><em class="sig-param"><span class="n"><span class="pre">size</span></span><span class="o">'
        b'<span class="pre">=</span></span><span class="default_value"><span class="pre">4</span></span></em><span class="sig-paren">)'
        b'</span><a class="reference internal" href="_modules/pool.html#create"><span class="viewcode-link"><span class="pre">[source]'
        b'</span></span></a><a class="headerlink" href="#pool.create" title="Link to this definition">\xc2\xb6</a></dt><dd><p>Create a pool.'
        b'</p></dd></dl></div></body></html>',
        "pool.create(size=4)\nCreate a pool.",
        id="Sphinx's source links",
    ),
    pytest.param(  # VitePress: a collapsible block's title is a line of its own
        b'<html><body><main><div class="vp-doc"><div class="tip custom-block"><p class="custom-block-title">TIP</p><p>Set <code>'
        b'max_workers</code> to the number of cores.</p></div><details><summary>Why four?</summary> Most laptops have four cores. '
        b'</details></div></main></body></html>',
        "TIP\nSet max_workers to the number of cores.\nWhy four?\nMost laptops have four cores.",
        id="a <details> block and its <summary>",
    ),
]


@pytest.mark.parametrize("html, text", GENERATOR_PAGES)
def test_html_of_documentation_generators(html, text):
    [doc] = parse_file(html, "page.html", {}, PUBLIC)
    assert doc.text == text


def test_redirect_page_is_not_a_document():
    # rustdoc writes such a page for every re-exported item: a quarter of std's files.
    page = (b'<!DOCTYPE html><html><head><meta http-equiv="refresh" content="0;URL=../../std/env/fn.var.html"><title>Redirection</title>'
            b'</head><body><p>Redirecting to <a href="../../std/env/fn.var.html">../../std/env/fn.var.html</a>...</p></body></html>')
    with pytest.raises(NotADocument, match=r"a redirect to \.\./\.\./std/env/fn\.var\.html"):
        parse_file(page, "env/var.html", {}, PUBLIC)
    # A page that moved but still holds its text is read; so is one that only reloads itself.
    moved = page.replace(b"<p>Redirecting", b"<p>" + b"This page moved. Pools keep workers alive between tasks. " * 6 + b"Redirecting")
    assert "Pools keep workers alive" in parse_file(moved, "pool.html", {}, PUBLIC)[0].text
    reloads = b'<html><head><meta http-equiv="refresh" content="30"></head><body><p>Queue length: 3</p></body></html>'
    assert parse_file(reloads, "status.html", {}, PUBLIC)[0].text == "Queue length: 3"


def test_not_found_page_is_not_a_document():
    # MkDocs, Docusaurus and VitePress each write one into the site they build.
    page = b"<html><body><main><h1>Page Not Found</h1><p>We could not find what you were looking for.</p></main></body></html>"
    with pytest.raises(NotADocument, match="not-found page"):
        parse_file(page, "site/404.html", {}, PUBLIC)
    assert parse_file(page, "errors/http-404-codes.html", {}, PUBLIC)[0].title == "Page Not Found"


def test_doxygen_page_is_titled_by_its_heading():
    # Its first <h2> is a group ("Functions", "Data Structures"): the title had been that.
    [doc] = parse_file(DOXYGEN_PAGE, "pool_8h.html", {}, PUBLIC)
    assert doc.title == "pool.h File Reference"
    assert [s.headings for s in doc.sections if s.headings][-1] == ("pool.h File Reference", "Functions")


def test_html_reads_the_element_whose_role_is_main():
    # Sphinx's classic themes: the page body is <div role="main">, its footer a plain <div>.
    html = (b'<html><body><div class="document"><div class="body" role="main"><h1>IDLE</h1><p>Editor windows.</p></div></div>'
            b'<div class="footer">Created using Sphinx 5.0.2.</div></body></html>')
    [doc] = parse_file(html, "idle.html", {}, PUBLIC)
    assert doc.text == "IDLE\nEditor windows."


def test_html_access_meta():
    html = b'<html><head><meta name="access" content="internal, finance"></head><body><p>Budget 2027.</p></body></html>'
    [doc] = parse_file(html, "b.html", {}, PUBLIC)
    assert doc.access == ("finance", "internal")


def test_pdf_text_title_and_page_sections():
    [doc] = parse_file(make_pdf([HEATER_P1, "Second page text."], title="Heater H7 Manual"), "h.pdf", {}, PUBLIC)
    assert doc.title == "Heater H7 Manual"
    assert "3 kW at 230 V" in doc.text
    assert [doc.text[s.start : s.end] for s in doc.sections][1] == "Second page text."


def test_jsonl_records_and_bad_lines_named():
    bad = KB_JSONL + '{"id": "kb-4"}\nnot json\n["a"]\n{"id": "kb-5", "text": "ok", "access": 5}\n'
    docs, problems = parse_jsonl(bad.encode(), "kb/articles.jsonl", PUBLIC)
    assert [d.doc_id for d in docs] == ["kb-1", "kb-2", "kb-3"]
    assert docs[1].metadata == {"updated": "2026-05-04"} and docs[2].access == ("internal",)
    assert docs[0].source == "kb/articles.jsonl" and docs[0].title == "Resetting the Control Box"
    assert [(n, m.split(" ")[0]) for n, m in problems] == [(4, "missing"), (5, "invalid"), (6, "expected"), (7, "access")]
    assert "'text'" in problems[0][1]


@pytest.mark.parametrize(
    "name, raw, message",
    [
        ("empty.md", b"", "empty document"),
        ("blank.txt", b"  \n\n ", "empty document"),
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", "binary content"),
        ("latin1.md", "caf\u00e9 cr\u00e8me".encode("latin-1"), "invalid UTF-8 at byte 3"),
        ("front.md", b"---\ntitle: [unclosed\n---\nbody\n", "front matter is not valid YAML"),
        ("fake.pdf", b"this is not a pdf", "not a PDF"),
        ("empty.html", b"<html><body><nav>menu</nav></body></html>", "empty document"),
    ],
)
def test_bad_files_raise_load_error(name, raw, message):
    with pytest.raises(LoadError, match=message):
        parse_file(raw, name, {}, PUBLIC)


def test_truncated_pdf_is_rejected_not_half_read():
    pdf = make_pdf([HEATER_P1, "Page two."])
    with pytest.raises(LoadError, match="truncated PDF"):
        parse_file(pdf[: len(pdf) // 2], "h.pdf", {}, PUBLIC)


def test_pdf_without_text_is_reported():
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    with pytest.raises(LoadError, match="scanned PDF"):
        parse_file(bytes(pdf.output()), "scan.pdf", {}, PUBLIC)


def test_utf8_bom_is_accepted():
    assert decode_text("\ufeffhello".encode("utf-8")) == "hello"


@pytest.mark.parametrize(
    "head, body",
    [
        pytest.param(b'<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">', "caf\u00e9 \u201cquoted\u201d".encode("cp1252"),
                     id="Latin-1 read as browsers do (windows-1252)"),
        pytest.param(b'<meta charset="shift_jis">', "\u8a2d\u5b9a".encode("shift_jis"), id="meta charset"),
        pytest.param(b'', "caf\u00e9 \u201cquoted\u201d".encode("cp1252"), id="an XML declaration (XHTML)"),
    ],
)
def test_html_in_the_encoding_it_declares(head, body):
    # Older documentation (libxslt's, under /usr/share/doc) is ISO-8859-1 and says so; it was refused as invalid UTF-8.
    declaration = b'<?xml version="1.0" encoding="iso-8859-1"?>\n' if not head else b""
    page = declaration + b"<html><head>" + head + b"<title>T</title></head><body><p>" + body + b"</p></body></html>"
    [doc] = parse_file(page, "page.html", {}, PUBLIC)
    assert doc.text == body.decode("shift_jis" if b"shift_jis" in head else "cp1252")


def test_html_encoding_errors_are_named():
    with pytest.raises(LoadError, match="unknown character encoding 'klingon'"):
        parse_file(b'<html><head>\n<meta charset="klingon"></head><body><p>caf\xe9</p></body></html>', "k.html", {}, PUBLIC)
    with pytest.raises(LoadError, match=r"invalid utf-8 at byte 53 \(line 1\), the encoding the page declares"):  # declared UTF-8 and is not
        parse_file(b'<html><head><meta charset="utf-8"></head><body><p>caf\xe9</p></body></html>', "u.html", {}, PUBLIC)
    with pytest.raises(LoadError, match="invalid shift_jis at byte 54"):
        parse_file(b'<html><head><meta charset="shift_jis"></head><body><p>\x81\xff</p></body></html>', "s.html", {}, PUBLIC)


def test_html_declared_latin1_that_is_utf8_reads_as_utf8():
    # A common slip: the template says ISO-8859-1, the editor saved UTF-8. Read as declared, "café" would be "cafÃ©".
    page = '<html><head><meta charset="iso-8859-1"></head><body><p>caf\u00e9</p></body></html>'.encode()
    [doc] = parse_file(page, "p.html", {}, PUBLIC)
    assert doc.text == "caf\u00e9" and doc.warnings == ()


def test_html_declaring_no_encoding_that_is_not_utf8_is_read_as_browsers_do_and_said():
    # libxslt's xslt.html: no charset anywhere, Latin-1 bytes. Browsers read such a page as windows-1252.
    [doc] = parse_file(b"<html><body><p>caf\xe9,\n\x93quoted\x94</p></body></html>", "x.html", {}, PUBLIC)
    assert doc.text == "caf\u00e9, \u201cquoted\u201d"
    assert doc.warnings == ("not UTF-8 at byte 18 (line 1) and no encoding declared: read as windows-1252, as browsers do; "
                            "declare the page's charset or re-save it as UTF-8",)
    [doc] = parse_file("<html><body><p>caf\u00e9</p></body></html>".encode(), "u.html", {}, PUBLIC)
    assert doc.text == "caf\u00e9" and doc.warnings == ()


def test_xhtml_page_parses_without_a_warning():
    # BeautifulSoup took an XML declaration with no "</html" in the first 500 characters for XML, and
    # warned on every such page a sync read (libxslt's news.html).
    page = (b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
            b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml"><head>'
            b'<title>T</title><style>' + b"p { margin: 0 }\n" * 40 + b"</style></head><body><p>Text.</p></body></html>")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [doc] = parse_file(page, "news.html", {}, PUBLIC)
    assert doc.text == "Text."
