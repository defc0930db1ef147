"""An app's config (environment): config, config:get, config:set, config:unset."""

from __future__ import annotations

import click

from minipaas.cli.common import current_host, existing_app, print_json, say


@click.command("config")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
@click.option("--shell", is_flag=True, help="As shell-quoted KEY=VALUE lines")
def config_show(app: str, as_json: bool, shell: bool) -> None:
    """Show an app's config: what its containers get (secret values marked; a deployer sees them <hidden>)."""
    import shlex

    from minipaas.access import access
    from minipaas.state import config

    host = current_host()
    entries = config.entries(host, existing_app(app))
    hide = access.hides_config_values()
    values = {key: HIDDEN if hide and entry.secret else entry.value for key, entry in entries.items()}
    if as_json:
        print_json(values)
    elif shell:
        for key, value in values.items():
            say(f"{key}={shlex.quote(value)}")
    else:
        say(f"=====> {app} config")
        width = max((len(k) for k in values), default=0)
        for key, value in values.items():
            mark = "  (secret)" if entries[key].secret and not hide else ""
            say(f"{key + ':':<{width + 1}}  {value}{mark}")
        withheld = config.withheld(host, app)
        if withheld and not hide:
            say(f"       not given (secret; a deployer pushed this branch): {', '.join(withheld)}")


HIDDEN = "<hidden>"


@click.command("config:get")
@click.argument("app")
@click.argument("key")
def config_get(app: str, key: str) -> None:
    """Print one config value exactly as stored."""
    from minipaas.errors import NotFound
    from minipaas.state import config
    from minipaas.state.names import check_env_key

    values = config.get_all(current_host(), existing_app(app))
    if check_env_key(key) not in values:
        raise NotFound(f"{app} has no config key {key}")
    click.echo(values[key])


@click.command("config:set")
@click.argument("app")
@click.argument("assignments", nargs=-1, required=True)
@click.option("--no-restart", is_flag=True, help="Store only; the next release picks it up")
@click.option("--secret", is_flag=True,
              help="Mark the values secret: deployers see them <hidden>, their review apps do not get them")
@click.option("--public", is_flag=True,
              help="Mark the values not secret (without either, a key keeps its mark; a new one is not secret)")
def config_set(app: str, assignments: tuple[str, ...], no_restart: bool, secret: bool, public: bool) -> None:
    """Set config values (KEY=VALUE ...) and roll out a release with them."""
    from minipaas.deploy import rollout
    from minipaas.errors import InvalidInput
    from minipaas.state import config
    from minipaas.state.names import parse_assignment

    if secret and public:
        raise InvalidInput("give --secret or --public, not both")
    host = current_host()
    existing_app(app)
    values = dict(parse_assignment(a) for a in assignments)
    mark = "secret" if secret else "public" if public else None
    marked = True if secret else False if public else None
    rollout.change_config(host, app, lambda: config.set_many(host, app, values, secret=marked), say,
                          restart=not no_restart)
    say(f"-----> Set {', '.join(values)} on {app}" + (f" ({mark})" if mark else ""))


@click.command("config:unset")
@click.argument("app")
@click.argument("keys", nargs=-1, required=True)
@click.option("--no-restart", is_flag=True)
def config_unset(app: str, keys: tuple[str, ...], no_restart: bool) -> None:
    """Remove config values and roll out a release without them."""
    from minipaas.deploy import rollout
    from minipaas.state import config

    host = current_host()
    existing_app(app)
    rollout.change_config(host, app, lambda: config.unset_many(host, app, list(keys)), say,
                           restart=not no_restart)
    say(f"-----> Unset {', '.join(keys)} on {app}")
