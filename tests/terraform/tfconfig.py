"""Read the repository's Terraform configuration and Rust sources for the structure tests.

python-hcl2 parses each .tf file into nested dicts and lists. Blocks become lists of dicts
marked with "__is_block__", string literals lose their quotes, and any expression stays as
its source text wrapped in "${...}".
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any, Iterator

import hcl2

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
PIPELINE_MODULE = TERRAFORM_DIR / "modules" / "pipeline"
PARTNER_MODULE = TERRAFORM_DIR / "modules" / "partner"
EXAMPLE_ENVIRONMENT = TERRAFORM_DIR / "environments" / "example"
CONFIGURATION_DIRS = (PIPELINE_MODULE, PARTNER_MODULE, EXAMPLE_ENVIRONMENT)

SCHEMA_DIR = REPO_ROOT / "shared" / "schemas" / "bigquery"
FUNCTIONS_DIR = REPO_ROOT / "functions"
RUNTIME_SRC_DIR = REPO_ROOT / "shared" / "runtime" / "src"

_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False)


def load_file(path: pathlib.Path) -> dict[str, Any]:
    """Parse one HCL file (a .tf or .tfvars file) into python-hcl2's dict form."""
    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle, serialization_options=_OPTIONS)


@dataclasses.dataclass(frozen=True)
class Resource:
    """One resource block: its type, name, body and the file it is in."""

    type: str
    name: str
    body: dict[str, Any]
    path: pathlib.Path

    @property
    def address(self) -> str:
        return f"{self.type}.{self.name}"


@dataclasses.dataclass
class Configuration:
    """The top-level blocks of all .tf files in one Terraform module directory."""

    directory: pathlib.Path
    resources: list[Resource]
    data_sources: list[Resource]
    variables: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    modules: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    terraform_blocks: list[dict[str, Any]]

    def resource(self, resource_type: str, name: str) -> Resource:
        for resource in self.resources:
            if resource.type == resource_type and resource.name == name:
                return resource
        raise AssertionError(f"{self.directory.name}: no resource {resource_type}.{name}")

    def resources_of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r.type == resource_type]


def _labelled_blocks(blocks: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (type, name, body) for blocks with two labels, such as resource "T" "N"."""
    for block in blocks:
        for block_type, instances in block.items():
            for name, body in instances.items():
                yield block_type, name, body


def _named_blocks(blocks: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (name, body) for blocks with one label, such as variable "N"."""
    for block in blocks:
        for name, body in block.items():
            if name != "__is_block__":
                yield name, body


def load_configuration(directory: pathlib.Path) -> Configuration:
    """Parse every .tf file of a module directory, not its subdirectories."""
    configuration = Configuration(directory, [], [], {}, {}, {}, {}, [])
    paths = sorted(directory.glob("*.tf"))
    if not paths:
        raise AssertionError(f"{directory} contains no .tf file")

    for path in paths:
        parsed = load_file(path)
        for resource_type, name, body in _labelled_blocks(parsed.get("resource", [])):
            configuration.resources.append(Resource(resource_type, name, body, path))
        for resource_type, name, body in _labelled_blocks(parsed.get("data", [])):
            configuration.data_sources.append(Resource(resource_type, name, body, path))
        configuration.variables.update(_named_blocks(parsed.get("variable", [])))
        configuration.outputs.update(_named_blocks(parsed.get("output", [])))
        configuration.modules.update(_named_blocks(parsed.get("module", [])))
        for block in parsed.get("locals", []):
            configuration.locals.update({k: v for k, v in block.items() if k != "__is_block__"})
        configuration.terraform_blocks.extend(parsed.get("terraform", []))
    return configuration


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Return the nested blocks called `name` of a block body, or [] when there are none."""
    value = body.get(name, [])
    if not isinstance(value, list):
        raise AssertionError(f"{name} is an attribute here, not a block")
    return value


def single_block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """Return the one nested block called `name`, failing when there is not exactly one."""
    found = blocks(body, name)
    assert len(found) == 1, f"expected one {name} block, found {len(found)}"
    return found[0]


def dynamic_blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Return the `dynamic "name"` blocks of a block body."""
    found = []
    for dynamic in body.get("dynamic", []):
        if name in dynamic:
            found.append(dynamic[name])
    return found


def references(expression: Any) -> set[str]:
    """Return the var.X, local.X and TYPE.NAME references in an expression's source text."""
    text = str(expression)
    return set(re.findall(r"\b(?:var|local|each|module|data)\.[A-Za-z0-9_]+", text)) | set(
        re.findall(r"\bgoogle_[a-z0-9_]+\.[A-Za-z0-9_]+", text)
    )


def _rust_sources(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(directory.rglob("*.rs")) if directory.is_dir() else []


_STRING_CONST = re.compile(r'const\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:\'static\s+)?str\s*=\s*"([^"]*)"\s*;')
_REQUIRED_VARS = re.compile(r"pub\s+const\s+REQUIRED_VARS\s*:\s*&\[&(?:'static\s+)?str\]\s*=\s*&\[(.*?)\]\s*;", re.S)


def required_vars(crate: str) -> list[str]:
    """Return the REQUIRED_VARS list of functions/CRATE/src/config.rs.

    Items may be string literals or names of `&str` constants declared in the crate or in the
    shared runtime crate. Fails with a message when the file, the list or a constant is
    missing, so that a missing list is never read as "nothing is required".
    """
    config_path = FUNCTIONS_DIR / crate / "src" / "config.rs"
    if not config_path.is_file():
        raise AssertionError(
            f"{config_path.relative_to(REPO_ROOT)} does not exist: the check of the Cloud Run "
            "environment needs `pub const REQUIRED_VARS: &[&str]` there"
        )
    source = re.sub(r"//[^\n]*", "", config_path.read_text(encoding="utf-8"))
    match = _REQUIRED_VARS.search(source)
    if match is None:
        raise AssertionError(
            f"{config_path.relative_to(REPO_ROOT)} has no `pub const REQUIRED_VARS: &[&str] = &[...];`"
        )

    constants: dict[str, str] = {}
    for path in _rust_sources(FUNCTIONS_DIR / crate / "src") + _rust_sources(RUNTIME_SRC_DIR):
        constants.update(_STRING_CONST.findall(path.read_text(encoding="utf-8")))

    names = []
    for item in (part.strip() for part in match.group(1).split(",")):
        if not item:
            continue
        literal = re.fullmatch(r'"([^"]*)"', item)
        if literal:
            names.append(literal.group(1))
            continue
        identifier = item.rsplit("::", 1)[-1]
        if identifier not in constants:
            raise AssertionError(
                f"REQUIRED_VARS in {config_path.relative_to(REPO_ROOT)} names {item}, "
                "which is not a `&str` constant of the crate or of shared/runtime"
            )
        names.append(constants[identifier])
    return names


def rust_struct_fields(path: pathlib.Path, struct: str) -> list[str]:
    """Return the serialised field names of `pub struct STRUCT { ... }` in a Rust file.

    Honours `#[serde(rename = "...")]` on a field and drops fields marked `#[serde(skip)]` or
    `#[serde(skip_serializing)]`. Struct-level rename_all is not supported and fails.
    """
    source = path.read_text(encoding="utf-8")
    match = re.search(r"((?:#\[[^\]]*\]\s*)*)pub\s+struct\s+" + struct + r"\s*\{(.*?)\n\}", source, re.S)
    if match is None:
        raise AssertionError(f"{path.relative_to(REPO_ROOT)} has no `pub struct {struct}`")
    if "rename_all" in match.group(1):
        raise AssertionError(f"{struct} uses serde rename_all, which this check does not apply")

    fields = []
    attributes = ""
    for line in match.group(2).splitlines():
        line = line.strip()
        if line.startswith("#["):
            attributes += line
            continue
        field = re.match(r"pub\s+([a-z_][a-z0-9_]*)\s*:", line)
        if field:
            rename = re.search(r'rename\s*=\s*"([^"]+)"', attributes)
            if not re.search(r"\bskip(_serializing)?\b", attributes):
                fields.append(rename.group(1) if rename else field.group(1))
            attributes = ""
        elif line and not line.startswith("//"):
            attributes = ""
    return fields
