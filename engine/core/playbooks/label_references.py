"""Which incident labels a playbook's templates and conditions read, and which of those its triggers do not
guarantee.

Templates and conditions fail on a label the incident does not have (the sandbox's undefined names are errors), so
``{{ incident.labels.version }}`` in a playbook whose trigger does not require ``version`` fails at run time, for
the incidents that lack it, as a ``not planned`` step. This module finds such reads when the playbook is loaded, so
that the author hears of them as a warning with the file and line, before an incident does.

A read is guaranteed when every trigger of the playbook requires the label: it is one of the trigger's ``labels``,
or one of its matchers cannot match a series without it (``version=~".+"``, ``version!=""``, ``model="fraud"``).
A read that is careful is not reported: ``incident.labels.get("version")``, ``incident.labels.version | default("")``
and reads in a template that asks ``"version" in incident.labels`` or ``incident.labels.version is defined``.
Only names written literally are found (``incident.labels[name]`` with a variable is not).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from jinja2 import TemplateError, nodes
from jinja2.parser import Parser

from engine.core.playbooks.sandbox import SANDBOX

if TYPE_CHECKING:
    from engine.core.playbooks.model import Playbook, Trigger

# Where in a playbook (keys and indices) and what to say.
Finding = tuple[tuple[str | int, ...], str]

_CAREFUL_FILTERS = frozenset({"default", "d"})
_CAREFUL_TESTS = frozenset({"defined", "undefined"})


def required_labels(trigger: Trigger) -> set[str]:
    """Labels every series this trigger matches has (an empty label counts as absent, as in Prometheus)."""
    required = {name for name, value in trigger.labels.items() if value}
    # A matcher that refuses a series without the label requires it: missing labels match as "".
    required |= {matcher.label for matcher in trigger.matchers if not matcher.matches({})}
    return required


def template_label_reads(source: str) -> set[str]:
    """Labels a template reads without care for their absence (empty if it does not parse: the loader reports
    that)."""
    try:
        tree = SANDBOX.parse(source)
    except (TemplateError, RecursionError):
        return set()
    return _risky_reads(tree)


def condition_label_reads(source: str) -> set[str]:
    """As ``template_label_reads``, for a condition (one expression)."""
    try:
        expression = Parser(SANDBOX, source, state="variable").parse_expression()
    except (TemplateError, RecursionError):
        return set()
    return _risky_reads(expression)


def unguaranteed_reads(playbook: Playbook) -> list[Finding]:
    """Each template parameter and condition that reads a label some trigger of ``playbook`` does not require."""
    guaranteed = set.intersection(*(required_labels(trigger) for trigger in playbook.triggers))
    findings: list[Finding] = []
    for index, condition in enumerate(playbook.conditions):
        findings += _findings(("conditions", index), condition_label_reads(condition) - guaranteed)
    for index, step in enumerate(playbook.steps):
        for location, text in _templates(step.params, ("steps", index, "params")):
            findings += _findings(location, template_label_reads(text) - guaranteed)
    return findings


def _findings(location: tuple[str | int, ...], labels: set[str]) -> list[Finding]:
    if not labels:
        return []
    names = ", ".join(sorted(labels))
    return [
        (
            location,
            f"reads incident label(s) {names}, which not every trigger requires: incidents without them leave this "
            'playbook unplanned; require them in the triggers (labels or matchers such as name=~".+") or read them '
            'with incident.labels.get("name") or | default(...)',
        )
    ]


def _templates(value: object, location: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        if "{" in value:
            yield location, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _templates(item, (*location, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _templates(item, (*location, str(key)))


def _risky_reads(tree: nodes.Node) -> set[str]:
    careful = _checked_names(tree)
    reads: set[str] = set()
    _walk(tree, reads, careful=False)
    return reads - careful


def _checked_names(tree: nodes.Node) -> set[str]:
    """Labels the template asks about before reading (``"x" in incident.labels``, ``... is defined``)."""
    checked: set[str] = set()
    for compare in tree.find_all(nodes.Compare):
        asks = any(op.op in ("in", "notin") and _is_labels(op.expr) for op in compare.ops)
        if asks and isinstance(compare.expr, nodes.Const) and isinstance(compare.expr.value, str):
            checked.add(compare.expr.value)
    for test in tree.find_all(nodes.Test):
        if test.name in _CAREFUL_TESTS:
            name = _label_read(test.node)
            if name is not None:
                checked.add(name)
    return checked


def _walk(node: nodes.Node, reads: set[str], *, careful: bool) -> None:
    if isinstance(node, nodes.Filter) and node.name in _CAREFUL_FILTERS and node.node is not None:
        _walk(node.node, reads, careful=True)
        _walk_all(_filter_arguments(node), reads)
        return
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and _is_labels(node.node.node):
        # A method of the label map (get, items, keys): not a label.
        _walk_all([*node.args, *node.kwargs], reads)
        return
    name = _label_read(node)
    if name is not None:
        if not careful:
            reads.add(name)
        return
    for child in node.iter_child_nodes():
        _walk(child, reads, careful=False)


def _filter_arguments(node: nodes.Filter) -> Sequence[nodes.Node]:
    return [*node.args, *node.kwargs]


def _walk_all(children: Sequence[nodes.Node], reads: set[str]) -> None:
    for child in children:
        _walk(child, reads, careful=False)


def _label_read(node: nodes.Node) -> str | None:
    """The label ``node`` reads (``incident.labels.x`` or ``incident.labels["x"]``), if it is such a read."""
    if isinstance(node, nodes.Getattr) and _is_labels(node.node):
        return node.attr
    if isinstance(node, nodes.Getitem) and _is_labels(node.node):
        argument = node.arg
        if isinstance(argument, nodes.Const) and isinstance(argument.value, str):
            return argument.value
    return None


def _is_labels(node: nodes.Node) -> bool:
    """Whether ``node`` is ``incident.labels`` (or ``incident["labels"]``)."""
    if isinstance(node, nodes.Getattr):
        owner, key = node.node, node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        owner, key = node.node, node.arg.value
    else:
        return False
    return key == "labels" and isinstance(owner, nodes.Name) and owner.name == "incident"
