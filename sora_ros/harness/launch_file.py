"""Read ROS 2 YAML launch files into the processes they start, without `launch`.

`launch` and `launch_ros` are not on PyPI, so `sora-ros launch` reads the YAML
front-end format itself. The subset covered is what ROS 2 launch files
commonly use, with the same meaning as `ros2 launch`:

- `arg` (name, default, description), `let` (name, value)
- `node` (pkg, exec, name, namespace, param [name/value or from], remap,
  args, ros_args, env, output, if/unless)
- `executable` (cmd, name, env, output, if/unless)
- `group` (a list of entities, or `children:`; scopes args and namespace),
  `push_ros_namespace` (namespace)
- `include` (file, arg [name/value])
- `set_env` (name, value): for the processes after it, scoped by groups and not by
  includes, as in ros2 launch
- substitutions `$(var NAME)`, `$(env NAME [DEFAULT])`, `$(find-pkg-share PKG)`,
  `$(find-pkg-prefix PKG)`, `$(dirname)`, `$(filename)`, nested innermost first.

Anything else is refused with the file and entity named, never ignored: an
unknown entity or attribute, a YAML boolean or number where ros2 launch wants a
string (`if: true` must be `if: "true"`), `if` and `unless` together, as
`ros2 launch` refuses them. Arguments given on the command line reach every file,
included ones too, as launch configurations do in ros2 launch (so
`demo.launch.yaml horizon:=8` sets the included world model's horizon); one that
no file declares is refused as a likely typo.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sora_ros.core.paths import PackageNotFoundError, package_prefix, package_share
from sora_ros.nodes import EXECUTABLES

# Python modules that implement the sora_ros executables when no colcon install
# provides lib/sora_ros/<exec> (the pip path).
NODE_MODULE_PACKAGE = "sora_ros.nodes"
_SUBSTITUTION = re.compile(r"\$\(([^()$]*)\)")  # innermost $( ... ) first
# A ROS package name (REP 144): lower case letters, digits and underscores, starting with a letter.
_PACKAGE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_TRUE, _FALSE = ("true", "1"), ("false", "0")
# The attributes each entity takes (a group may also be a plain list of entities).
_ATTRIBUTES = {
    "arg": {"name", "default", "description"},
    "let": {"name", "value"},
    "node": {"pkg", "exec", "name", "namespace", "param", "remap", "args", "ros_args", "env", "output", "if", "unless"},
    "executable": {"cmd", "name", "env", "output", "if", "unless"},
    "group": {"children", "if", "unless"},
    "push_ros_namespace": {"namespace"},
    "include": {"file", "arg", "if", "unless"},
    "set_env": {"name", "value"},
}
# Attributes ros2 launch reads as strings: a YAML boolean or number there fails in ros2 launch.
_STRING_ATTRIBUTES = {"name", "default", "description", "value", "pkg", "exec", "namespace", "args", "ros_args",
                      "cmd", "file", "if", "unless", "output"}  # fmt: skip


class LaunchFileError(ValueError):
    """A launch file that cannot be run; the message names the file and the entity."""


@dataclass
class ProcessSpec:
    """One process to start: a node or a plain executable."""

    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Scope:
    """What a group scopes: launch configurations, the pushed namespace and set_env's variables."""

    configurations: dict[str, str]
    namespace: str = ""
    environment: dict[str, str] = field(default_factory=dict)

    def child(self) -> _Scope:
        return _Scope(dict(self.configurations), self.namespace, dict(self.environment))


def _check_package_name(package: str) -> None:
    if not _PACKAGE_NAME.fullmatch(package):
        raise LaunchFileError(f"{package!r} is not a ROS package name (lower case letters, digits and underscores, "
                              f"starting with a letter; REP 144), as ros2 launch also requires")


def _resolve_executable(package: str, executable: str) -> list[str]:
    _check_package_name(package)
    if "/" in executable or executable.startswith(".") or not executable:
        raise LaunchFileError(f"exec {executable!r} must be the plain name of an executable of package {package!r}, "
                              f"not a path")
    prefix = package_prefix(package)
    if prefix is not None:
        candidate = prefix / "lib" / package / executable
        if os.access(candidate, os.X_OK):
            return [str(candidate)]
    if package == "sora_ros" and executable in EXECUTABLES:
        return [sys.executable, "-m", f"{NODE_MODULE_PACKAGE}.{executable}"]
    raise LaunchFileError(
        f"executable {executable!r} of package {package!r} not found "
        f"(looked for lib/{package}/{executable} under AMENT_PREFIX_PATH"
        + (f"; sora_ros installs {', '.join(EXECUTABLES)})" if package == "sora_ros" else ")")
    )


def _as_ros_value(value: Any) -> str:
    """A parameter value as `-p name:=VALUE` expects it (YAML, which ROS parses)."""
    if value == "":
        return "''"  # rcl refuses `name:=` with nothing after it
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def _join_namespace(outer: str, inner: str) -> str:
    if inner.startswith("/"):
        return inner
    parts = [part for part in (outer.strip("/"), inner.strip("/")) if part]
    return "/" + "/".join(parts)


class LaunchFile:
    """One launch file being read, with its substitutions and the processes it starts."""

    def __init__(self, path: Path, arguments: dict[str, str], scope: _Scope | None = None,
                 parent: LaunchFile | None = None) -> None:  # fmt: skip
        """Args:
            arguments: the command line's `name:=value` for the top-level file, an include's `arg`s otherwise.
            parent: the including file (None for the top level).
        """
        self.path = path.resolve()
        self.arguments = arguments
        self.scope = scope or _Scope({})
        self.processes: list[ProcessSpec] = []
        self.declared: set[str] = set()
        # Shared with every included file: the command line and what any file declares.
        self.command_line: dict[str, str] = parent.command_line if parent else arguments
        self.declared_anywhere: set[str] = parent.declared_anywhere if parent else set()
        self.is_top_level = parent is None

    def fail(self, message: str) -> LaunchFileError:
        return LaunchFileError(f"{self.path}: {message}")

    def required(self, attributes: Any, key: str, what: str) -> Any:
        if not isinstance(attributes, dict) or key not in attributes:
            raise self.fail(f"{what}: the attribute {key!r} is required")
        return attributes[key]

    # -- substitutions -------------------------------------------------------------

    def substitute(self, value: Any, scope: _Scope) -> Any:
        """Expand $(...) substitutions in strings; other values pass through."""
        if not isinstance(value, str):
            return value
        while True:
            match = _SUBSTITUTION.search(value)
            if match is None:
                return value
            value = value[: match.start()] + self._expand(match.group(1).split(), scope) + value[match.end() :]

    def _expand(self, words: list[str], scope: _Scope) -> str:
        kind, args = (words[0], words[1:]) if words else ("", [])
        if kind == "var" and len(args) == 1:
            if args[0] not in scope.configurations:
                raise self.fail(f"$(var {args[0]}): no arg or let named {args[0]!r} is declared before it")
            return scope.configurations[args[0]]
        if kind == "env" and len(args) in (1, 2):
            if args[0] not in os.environ and len(args) == 1:
                raise self.fail(f"$(env {args[0]}): environment variable not set and no default given")
            return os.environ.get(args[0], args[1] if len(args) == 2 else "")
        if kind == "find-pkg-share" and len(args) == 1:
            return str(self.share(args[0]))
        if kind == "find-pkg-prefix" and len(args) == 1:
            return str(self.share(args[0]).parent.parent)
        if kind == "dirname" and not args:
            return str(self.path.parent)
        if kind == "filename" and not args:
            return self.path.name
        raise self.fail(f"substitution $({' '.join(words)}) is not supported")

    def share(self, package: str) -> Path:
        try:
            _check_package_name(package)
            return package_share(package)
        except (PackageNotFoundError, LaunchFileError) as error:
            raise self.fail(str(error)) from None

    def condition_holds(self, attributes: dict[str, Any], scope: _Scope, what: str) -> bool:
        if "if" in attributes and "unless" in attributes:
            raise self.fail(f"{what}: 'if' and 'unless' together (ros2 launch refuses that too)")
        for key, wanted in (("if", True), ("unless", False)):
            if key in attributes:
                text = str(self.substitute(attributes[key], scope)).strip().lower()
                if text not in _TRUE + _FALSE:
                    raise self.fail(f"{what}: {key}: {text!r} is not a boolean (true/false/1/0)")
                if (text in _TRUE) != wanted:
                    return False
        return True

    # -- entities ------------------------------------------------------------------

    def read(self) -> list[ProcessSpec]:
        """Parse the file and return the processes it starts, in order.

        Raises:
            LaunchFileError: unreadable YAML, an unknown entity or substitution,
                a missing required arg, an executable that cannot be found.
        """
        try:
            document = yaml.safe_load(self.path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise self.fail(f"cannot read launch file: {error}") from error
        if not isinstance(document, dict) or not isinstance(document.get("launch"), list):
            raise self.fail("not a ROS 2 YAML launch file: expected a top-level 'launch:' list")
        self._entities(document["launch"], self.scope)
        declared = self.declared_anywhere if self.is_top_level else self.declared
        undeclared = sorted(set(self.arguments) - declared)
        if undeclared:
            where = "this file and its includes take" if self.is_top_level else "this file takes"
            raise self.fail(
                f"launch argument(s) {', '.join(undeclared)} not declared; "
                f"{where}: {', '.join(sorted(declared)) or 'no arguments'}"
            )
        return self.processes

    def _entities(self, entities: list[Any], scope: _Scope) -> None:
        for entity in entities:
            if not isinstance(entity, dict) or len(entity) != 1:
                raise self.fail(f"each launch entry must be a mapping with one key, got {entity!r}")
            (kind, attributes), = entity.items()
            handler = getattr(self, f"_entity_{kind}", None)
            if handler is None:
                raise self.fail(f"entity {kind!r} is not supported by sora-ros launch")
            if isinstance(attributes, dict):
                self._check_attributes(kind, attributes)
            handler(attributes, scope)

    def _check_attributes(self, kind: str, attributes: dict[str, Any]) -> None:
        unknown = sorted(set(attributes) - _ATTRIBUTES[kind])
        if unknown:
            raise self.fail(f"{kind}: unknown attribute(s) {', '.join(map(repr, unknown))} (ros2 launch refuses them "
                            f"too); {kind} takes: {', '.join(sorted(_ATTRIBUTES[kind]))}")  # fmt: skip
        for key in sorted(set(attributes) & _STRING_ATTRIBUTES):
            if not isinstance(attributes[key], str):
                raise self.fail(f"{kind}: {key}: {attributes[key]!r} must be a string, as ros2 launch requires; "
                                f"quote it: {key}: \"{_as_ros_value(attributes[key])}\"")  # fmt: skip

    def _items(self, attributes: dict[str, Any], key: str, forms: tuple[set[str], ...], what: str) -> list[dict]:
        """The list under `key`, each item a mapping with exactly one of the key sets in `forms`."""
        items = attributes.get(key, [])
        if not isinstance(items, list):
            raise self.fail(f"{what}: {key} must be a list")
        for item in items:
            if not isinstance(item, dict) or set(item) not in forms:
                expected = " or ".join("{" + ", ".join(sorted(form)) + "}" for form in forms)
                raise self.fail(f"{what}: each {key} entry must be {expected}, got {item!r}")
        return items

    def _entity_arg(self, attributes: dict[str, Any], scope: _Scope) -> None:
        name = self.required(attributes, "name", "arg")
        self.declared.add(name)
        self.declared_anywhere.add(name)
        if name in self.arguments:  # an include's arg beats the command line, as in ros2 launch
            scope.configurations[name] = str(self.arguments[name])
        elif name in self.command_line:
            scope.configurations[name] = str(self.command_line[name])
        elif name not in scope.configurations:
            if "default" not in attributes:
                raise self.fail(f"arg {name!r} is required: pass {name}:=VALUE")
            scope.configurations[name] = str(self.substitute(attributes["default"], scope))

    def _entity_let(self, attributes: dict[str, Any], scope: _Scope) -> None:
        name, value = self.required(attributes, "name", "let"), self.required(attributes, "value", "let")
        scope.configurations[name] = str(self.substitute(value, scope))

    def _entity_push_ros_namespace(self, attributes: dict[str, Any], scope: _Scope) -> None:
        namespace = self.required(attributes, "namespace", "push_ros_namespace")
        scope.namespace = _join_namespace(scope.namespace, self.substitute(namespace, scope))

    def _entity_group(self, attributes: Any, scope: _Scope) -> None:
        children = attributes.get("children", []) if isinstance(attributes, dict) else attributes
        if isinstance(attributes, dict) and not self.condition_holds(attributes, scope, "group"):
            return
        self._entities(children, scope.child())

    def _entity_include(self, attributes: dict[str, Any], scope: _Scope) -> None:
        if not self.condition_holds(attributes, scope, "include"):
            return
        path = Path(self.substitute(self.required(attributes, "file", "include"), scope))
        if not path.is_absolute():
            path = self.path.parent / path
        given = self._items(attributes, "arg", ({"name", "value"},), "include")
        for item in given:
            self._check_attributes("let", item)  # the same shape: a string name and a string value
        arguments = {a["name"]: str(self.substitute(a["value"], scope)) for a in given}
        # The same environment: ros2 launch does not scope an include's set_env.
        included = LaunchFile(path, arguments, _Scope({}, scope.namespace, scope.environment), parent=self)
        self.processes.extend(included.read())

    def _entity_set_env(self, attributes: dict[str, Any], scope: _Scope) -> None:
        name, value = self.required(attributes, "name", "set_env"), self.required(attributes, "value", "set_env")
        scope.environment[name] = str(self.substitute(value, scope))

    def _environment(self, attributes: dict[str, Any], scope: _Scope) -> dict[str, str]:
        """set_env's variables so far, then the entity's own env."""
        items = self._items(attributes, "env", ({"name", "value"},), "env")
        return {**scope.environment, **{e["name"]: str(self.substitute(e["value"], scope)) for e in items}}

    def _entity_executable(self, attributes: dict[str, Any], scope: _Scope) -> None:
        if not self.condition_holds(attributes, scope, "executable"):
            return
        cmd = shlex.split(self.substitute(self.required(attributes, "cmd", "executable"), scope))
        name = attributes.get("name", Path(cmd[0]).name)
        self.processes.append(ProcessSpec(name, cmd, self._environment(attributes, scope)))

    def _entity_node(self, attributes: dict[str, Any], scope: _Scope) -> None:
        what = f"node {attributes.get('name', attributes.get('exec'))!r}"
        if not self.condition_holds(attributes, scope, what):
            return
        sub = lambda key, default="": self.substitute(attributes.get(key, default), scope)  # noqa: E731
        package, executable = sub("pkg"), sub("exec")
        if not package or not executable:
            raise self.fail(f"{what}: 'pkg' and 'exec' are required")
        try:
            cmd = _resolve_executable(package, executable) + shlex.split(sub("args"))
        except LaunchFileError as error:
            raise self.fail(f"{what}: {error}") from None
        name = sub("name") or executable
        ros_args = ["--ros-args", "-r", f"__node:={name}"]
        namespace = _join_namespace(scope.namespace, sub("namespace"))
        if namespace != "/":
            ros_args += ["-r", f"__ns:={namespace}"]
        for param in self._items(attributes, "param", ({"name", "value"}, {"from"}), what):
            if "from" in param:
                ros_args += ["--params-file", str(self.substitute(param["from"], scope))]
            else:
                ros_args += ["-p", f"{param['name']}:={_as_ros_value(self.substitute(param['value'], scope))}"]
        for remap in self._items(attributes, "remap", ({"from", "to"},), what):
            ros_args += ["-r", f"{self.substitute(remap['from'], scope)}:={self.substitute(remap['to'], scope)}"]
        ros_args += shlex.split(sub("ros_args"))
        label = namespace.rstrip("/") + "/" + name
        self.processes.append(ProcessSpec(label, cmd + ros_args, self._environment(attributes, scope)))


def read_launch_file(path: str | Path, arguments: dict[str, str]) -> list[ProcessSpec]:
    """The processes a YAML launch file starts, given `name:=value` arguments.

    Raises:
        LaunchFileError: see LaunchFile.read.
    """
    return LaunchFile(Path(path), arguments).read()


def parse_launch_arguments(words: list[str]) -> dict[str, str]:
    """`["image:=/cam", "horizon:=8"]` -> `{"image": "/cam", "horizon": "8"}`.

    Raises:
        LaunchFileError: a word without `:=`.
    """
    arguments = {}
    for word in words:
        name, separator, value = word.partition(":=")
        if not separator or not name:
            raise LaunchFileError(f"launch argument {word!r} is not of the form name:=value")
        if not value:
            raise LaunchFileError(f"launch argument {word!r} has no value (ros2 launch refuses that too)")
        arguments[name] = value
    return arguments
