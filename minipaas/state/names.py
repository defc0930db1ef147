"""Validation of every name and value that enters minipaas from outside.

Names are checked once, here, at the boundary; inside, they are trusted strings.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from minipaas.errors import InvalidInput

APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
# A review app (a branch's own deploy) is `<app>--<slug>`: the slug a DNS label made from the branch name.
REVIEW_SEPARATOR = "--"
REVIEW_NAME = re.compile(r"([a-z][a-z0-9-]{0,62})--((?!-)[a-z0-9-]{1,63}(?<!-))")
MAX_SLUG = 63  # one DNS label: `<slug>.<app>.<domain>`
# `v<N>.<app>.<domain>` reaches release N of the app (routing/routes.lua): no review app's slug may look like it.
RELEASE_LABEL = re.compile(r"v[0-9]+")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# PORT is set by minipaas for every web container; the others would break the image or the host.
RESERVED_KEYS = frozenset({"PORT"})
# An app's images are `minipaas/<app>`: these names are the repositories of minipaas' own base images.
RESERVED_APPS = frozenset({"node"})
MAX_CONFIG_VALUE = 64 * 1024


def check_app(name: str) -> str:
    """An app's name: one of `apps:create`'s, or a review app's `<app>--<slug>`."""
    if review_parts(name) is not None:
        return name
    if not APP_NAME.fullmatch(name) or name.endswith("-"):
        raise InvalidInput(
            f"invalid app name {_show(name)}: use 1 to 63 lowercase letters, digits and dashes, "
            "starting with a letter"
        )
    return name


def check_new_app(name: str) -> str:
    check_app(name)
    if REVIEW_SEPARATOR in name:
        raise InvalidInput(f"invalid app name {_show(name)}: `--` is kept for review apps (`<app>--<branch>`)")
    if name in RESERVED_APPS:
        raise InvalidInput(f"app name {name} is reserved: minipaas/{name} holds minipaas' base images")
    return name


def review_parts(name: str) -> tuple[str, str] | None:
    """A review app's (parent, slug); None for an app of its own (a dash may end no app's name)."""
    review = REVIEW_NAME.fullmatch(name)
    if review is None or review.group(1).endswith("-"):
        return None
    return review.group(1), review.group(2)


def parent_of(name: str) -> str | None:
    """The app a review app belongs to (None for an app of its own)."""
    parts = review_parts(name)
    return parts[0] if parts else None


def review_name(parent: str, slug: str) -> str:
    return f"{parent}{REVIEW_SEPARATOR}{slug}"


def branch_slug(branch: str, *, distinct: bool = False) -> str:
    """A DNS label for a branch name: lower case, every run of other characters a dash, at most 63
    characters. Where it had to be cut, or `distinct` (another branch has the plain slug already), or it
    would be a release's label (`v12`), a short hash of the whole name ends it, so that different branches
    never share a slug and no review app's URL is a release's."""
    ascii_only = unicodedata.normalize("NFKD", branch).encode("ascii", "ignore").decode()
    plain = re.sub(r"[^a-z0-9]+", "-", ascii_only.lower()).strip("-") or "branch"
    if len(plain) <= MAX_SLUG and not distinct and not RELEASE_LABEL.fullmatch(plain):
        return plain
    suffix = hashlib.sha256(branch.encode("utf-8", "surrogateescape")).hexdigest()[:6]
    return f"{plain[:MAX_SLUG - 7].rstrip('-')}-{suffix}"


def check_hostname(name: str, *, what: str = "domain") -> str:
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(f"invalid {what} {_show(name)}: not a valid hostname")
    return name


# An absolute path of plain characters: what may stand unquoted in a shell command, an authorized_keys
# `command="..."`, a sudoers rule and a systemd unit (a home named there, the program sudo runs).
PLAIN_PATH = re.compile(r"/[A-Za-z0-9._+/-]{1,200}")


def check_plain_path(path: str, *, what: str) -> str:
    parts = path.split("/")[1:]
    if not PLAIN_PATH.fullmatch(path) or any(part in ("", ".", "..") for part in parts):
        raise InvalidInput(f"{what} must be an absolute path of letters, digits, dots, dashes, underscores "
                           f"and plus signs (no `.`, `..` or empty parts), not {_show(path)}")
    return path


# A path an HTTP request carries as it is (http.client sends it verbatim, and refuses anything else):
# printable ASCII without spaces. A health check's path must be one; others are percent-encoded.
REQUEST_PATH = re.compile(r"/[!-~]*")


def check_domain(name: str) -> str:
    return check_hostname(name.lower().rstrip("."))


def check_env_key(key: str) -> str:
    if not ENV_KEY.fullmatch(key) or len(key) > 256:
        raise InvalidInput(
            f"invalid config key {_show(key)}: use letters, digits and underscores, not starting with a digit"
        )
    if key in RESERVED_KEYS:
        raise InvalidInput(f"config key {key} is set by minipaas and cannot be changed")
    return key


def check_env_value(key: str, value: str) -> str:
    if "\x00" in value:
        raise InvalidInput(f"config value of {key} contains a NUL byte, which environment variables cannot hold")
    try:  # a command line's bytes in another encoding arrive as lone surrogates: no store nor engine takes them
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"config value of {key} is not valid UTF-8") from None
    if len(encoded) > MAX_CONFIG_VALUE:
        raise InvalidInput(f"config value of {key} is longer than {MAX_CONFIG_VALUE} bytes")
    return value


def parse_assignment(text: str) -> tuple[str, str]:
    """`KEY=value` as given on a command line; the value may itself contain `=`."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidInput(f"expected KEY=VALUE, got {_show(text)}")
    return check_env_key(key), check_env_value(key, value)


IMAGE_PATTERN = re.compile(r"[a-z0-9*?][a-z0-9._/:@*?\[\]-]{0,254}")


def is_count(value: str, low: int, high: int) -> bool:
    """A whole number from `low` to `high`, in ASCII digits: str.isdigit() also takes `²`, which int() refuses,
    Arabic-Indic digits, which nothing downstream reads, and thousands of digits, past int()'s limit."""
    return bool(re.fullmatch(r"[0-9]{1,12}", value)) and low <= int(value) <= high


_SIZE = re.compile(r"([1-9][0-9]{0,15})([kmg])")
_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def _size_bytes(size: str) -> int | None:
    found = _SIZE.fullmatch(size)
    return int(found[1]) * _UNITS[found[2]] if found else None


def is_size(value: str, *, at_least: str) -> bool:
    """A memory size as the settings take it (`512m`, `2g`, `6144k`), at least `at_least`."""
    size = _size_bytes(value)
    return size is not None and size >= (_size_bytes(at_least) or 0)


MAX_CPUS = 1024
_CPUS = re.compile(r"(0|[1-9][0-9]{0,3})(\.[0-9]{1,9})?")


def is_cpus(value: str) -> bool:
    """A CPU limit the engine (NanoCpus) and the kernel (cpu.max: at least 1 ms of each 100 ms) can take: a
    decimal from 0.01 to MAX_CPUS (0.0000000001 was 0 nano-CPUs, no limit at all; 400 digits an infinite float)."""
    return bool(_CPUS.fullmatch(value)) and 0.01 <= float(value) <= MAX_CPUS


def image_patterns(text: str) -> list[str]:
    """The `build-images` settings: image patterns (`node:*-slim`) separated by commas or blanks."""
    return [p for p in re.split(r"[,\s]+", text) if p]


def valid_image_patterns(text: str) -> bool:
    return all(IMAGE_PATTERN.fullmatch(p) for p in image_patterns(text))


def _show(value: str) -> str:
    """A name as it can safely be echoed back on one line."""
    shown = value if len(value) <= 80 else value[:77] + "..."
    return repr(shown)


NOTIFICATION_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


def check_notification(name: str) -> str:
    """A notification's name (`notify:add NAME`): as an app's."""
    if not NOTIFICATION_NAME.fullmatch(name) or name.endswith("-"):
        raise InvalidInput(f"invalid notification name {_show(name)}: use 1 to 63 lowercase letters, digits and "
                           "dashes, starting with a letter")
    return name
