"""The documented layout is the real one: the README's "Layout" block and docs/architecture.md
name every package, and every path they name exists. The README stays a short front page, and
every relative link in it and in docs/*.md points at a file that exists."""

from __future__ import annotations

import re

from tests.conftest import PROJECT


def _layout_block() -> str:
    readme = (PROJECT / "README.md").read_text()
    section = readme.split("## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def test_readme_layout_names_every_package():
    block = _layout_block()
    packages = sorted(p.parent.relative_to(PROJECT / "pipeline").as_posix()
                      for p in (PROJECT / "pipeline").glob("*/__init__.py"))
    assert packages, "no sub-packages found"
    for package in packages:
        if package.startswith("evaluation/"):
            continue
        assert re.search(rf"^\s+{re.escape(package)}/", block, re.M), f"pipeline/{package}/ missing"
    for top in ("pipeline/", "judges/", "prompts/", "data/", "tests/", "benchmarks/", "docker/", "docs/"):
        assert re.search(rf"^{re.escape(top)}", block, re.M), top
        assert (PROJECT / top).is_dir(), top


def test_readme_layout_names_only_modules_that_exist():
    block = _layout_block()
    for line in block.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            for name in re.findall(r"\b([a-z_]+\.py)\b", line.split("  ", 2)[1]):
                assert list((PROJECT / "pipeline").rglob(name)), f"{name} named in the README layout"


def test_architecture_doc_paths_exist():
    text = (PROJECT / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"`((?:pipeline|judges)/[\w/]+\.py)`", text))
    paths |= {f"pipeline/{p}" for p in re.findall(r"\((?:pipeline/)?(stages/\w+\.py)", text)}
    assert len(paths) >= 8
    for path in sorted(paths):
        assert (PROJECT / path).is_file(), path


def test_every_package_has_its_test_folder():
    for package in ("stages", "backends", "tasks", "evaluation", "training", "reporting"):
        assert (PROJECT / "pipeline" / package / "__init__.py").is_file(), package
        assert list((PROJECT / "tests" / package).glob("test_*.py")), f"tests/{package}/"
    assert list((PROJECT / "tests" / "judges").glob("test_*.py"))


#: ``[text](target)`` and ``![alt](target "title")``: the target up to a space or ``)``.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _broken_links(page) -> list[str]:
    text = re.sub(r"^(```|~~~).*?^\1", "", page.read_text(), flags=re.M | re.S)  # code blocks
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"(?i)(https?:|mailto:|#)", target):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (page.parent / path).exists():
            broken.append(f"{page.relative_to(PROJECT)}: {target}")
    return broken


def test_relative_links_in_readme_and_docs_resolve():
    pages = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
    assert len(pages) > 5
    assert sum(len(_LINK.findall(page.read_text())) for page in pages) > 20, "no links found"
    broken = [link for page in pages for link in _broken_links(page)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_is_a_short_front_page():
    lines = (PROJECT / "README.md").read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines: move detail into docs/"
    assert "```bash\nmake test\n```" in "\n".join(lines)  # CI's test command, as people read it


# -- layers: no import circles, commands on top, judges standing alone ----------------------

#: The command modules: a parser plus ``main``; nothing in the library imports them.
COMMANDS = {"pipeline.run", "pipeline.train", "pipeline.evaluate", "pipeline.compare",
            "pipeline.push", "pipeline.cli", "pipeline.tasks.cli", "pipeline.audit"}
LIBRARY = ("pipeline.evaluation", "pipeline.training", "pipeline.stages", "pipeline.tasks",
           "pipeline.backends", "pipeline.reporting", "pipeline.auditing")


def _module_name(path) -> str:
    parts = list(path.relative_to(PROJECT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Every project module -> the project modules it imports anywhere in its body: at the
    top, inside functions and under ``TYPE_CHECKING`` (a deferred import still ties the two
    modules together)."""
    import ast

    files = [p for top in ("pipeline", "judges") for p in (PROJECT / top).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circles_deferred_imports_included():
    graph = _import_graph()
    assert len(graph) > 60 and graph["pipeline.curate"], "the scan found no imports"
    assert _circles(graph) == []
    # the check itself finds a circle when there is one
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_never_imports_a_command():
    graph = _import_graph()
    offenders = [(module, sorted(graph[module] & COMMANDS)) for module in sorted(graph)
                 if module.startswith(LIBRARY) and module not in COMMANDS
                 and not module.endswith(".__main__") and graph[module] & COMMANDS]
    assert offenders == []


def test_judges_import_nothing_from_pipeline():
    graph = _import_graph()
    offenders = {m: sorted(t for t in graph[m] if t.startswith("pipeline"))
                 for m in graph if m.split(".")[0] == "judges"}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_a_judge_loads_without_the_pipeline():
    import subprocess
    import sys

    code = ("import sys, judges, judges.nq, judges.gsm8k, judges.mbpp, judges.rules\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pipeline'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
