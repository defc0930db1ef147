"""What a Postgres service's roles are, as text: the SQL scripts that make and drop them and the
`pg_hba.conf` / `pg_ident.conf` that say who may log in how (pure; pgaccess.py runs them in the container).

The model (docs/security.md, "Postgres: a role per app"): the database and everything in it belong to
`owner` (state.services.OWNER_ROLE), which holds nothing else: no superuser, CREATEDB, CREATEROLE,
replication or RLS bypass, no membership in any role (so none of pg_execute_server_program,
pg_read_server_files, pg_write_server_files). Each linked app logs in as a role of its own (NOINHERIT, the
same nothing more) that is a member of `owner` and whose sessions start as it (`ALTER ROLE ... SET role`):
what an app creates is owned by `owner`, so every app linked to the service can use and migrate it (dokku's
one database shared by its linked apps), and an app that leaves `owner` (`SET ROLE NONE`) holds nothing.
The superuser is minipaas' own, over the container's local socket only.

Every script starts by taking back what a session could have been given at its start by settings the
database's owner may make (`ALTER DATABASE ... SET search_path`, `role`, read-only): the superuser's
statements resolve names in pg_catalog only, so no object of an app runs with its rights.
"""

# ruff: noqa: S608 -- this module renders SQL as text: every name and value in it goes through ident() or literal()
from __future__ import annotations

import base64

from minipaas.state.services import OWNER_ROLE, REVIEW_GROUP, SUPERUSER

# The roles the server's own file-access and program-running functions are granted through.
SERVER_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
NOTHING_MORE = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
IDENT_MAP = "minipaas"


def ident(name: str) -> str:
    """An SQL identifier, quoted."""
    if "\0" in name:
        raise ValueError("a NUL in an SQL identifier")
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """An SQL string literal (the prelude turns standard_conforming_strings on: no backslash escapes)."""
    if "\0" in text:
        raise ValueError("a NUL in an SQL literal")
    return "'" + text.replace("'", "''") + "'"


def verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for `password` (made here, by scramp, so the password
    itself never reaches the server, its logs or pg_stat_activity)."""
    from scramp import ScramMechanism  # here: every push imports this module, a link alone needs scramp

    mechanism = ScramMechanism("SCRAM-SHA-256")
    made_salt, stored_key, server_key, count = mechanism.make_auth_info(password, iteration_count=iterations,
                                                                        salt=salt)
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${count}:{b64(made_salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


PRELUDE = """\
SET ROLE NONE;
SET search_path = pg_catalog, pg_temp;
SET standard_conforming_strings = on;
SET default_transaction_read_only = off;
SET statement_timeout = 0;
SET lock_timeout = '60s';
"""


def _drop_memberships(role: str, keep: tuple[str, ...] = ()) -> str:
    """A block revoking every role `role` is a member of, but `keep`."""
    kept = ", ".join(literal(k) for k in keep) or "''"
    return f"""\
DO $minipaas$
DECLARE r record;
BEGIN
  FOR r IN SELECT g.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid
           WHERE a.member = (SELECT oid FROM pg_roles WHERE rolname = {literal(role)})
             AND g.rolname NOT IN ({kept}) LOOP
    EXECUTE format('REVOKE %I FROM %I', r.rolname, {literal(role)});
  END LOOP;
END
$minipaas$;
"""


def _ensure_role(role: str) -> str:
    return f"""\
DO $minipaas$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {literal(role)}) THEN
    CREATE ROLE {ident(role)};
  END IF;
END
$minipaas$;
"""


def prepare(database: str) -> str:
    """The owner role as it must be, owning the database; no other role may connect to any database but
    through a role of its own (PUBLIC's CONNECT revoked everywhere)."""
    owner, db = ident(OWNER_ROLE), ident(database)
    return (PRELUDE + _ensure_role(OWNER_ROLE)
            # LOGIN only for minipaas' own restores over the local socket (pg_hba.conf rejects it over TCP);
            # INHERIT: it uses the public schema as the database's owner (pg_database_owner).
            + f"ALTER ROLE {owner} WITH LOGIN INHERIT {NOTHING_MORE} PASSWORD NULL CONNECTION LIMIT -1;\n"
            + f"ALTER ROLE {owner} RESET ALL;\n"
            + _drop_memberships(OWNER_ROLE)
            + f"ALTER DATABASE {db} OWNER TO {owner};\n"
            # review apps' roles are members of this group alone (review_grant): no login, nothing more
            + _ensure_role(REVIEW_GROUP)
            + f"ALTER ROLE {ident(REVIEW_GROUP)} WITH NOLOGIN NOINHERIT {NOTHING_MORE} PASSWORD NULL;\n"
            + f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;\n"
            + "REVOKE ALL ON DATABASE postgres FROM PUBLIC;\n"
            + "REVOKE ALL ON DATABASE template1 FROM PUBLIC;\n")


def _login_role(role: str, password_verifier: str, *, inherit: bool, member_of: str) -> str:
    """A role made or made again that logs in with the password, holds no other right and is a member of
    `member_of` alone."""
    r = ident(role)
    return (PRELUDE + _ensure_role(role)
            + f"ALTER ROLE {r} WITH LOGIN {'INHERIT' if inherit else 'NOINHERIT'} {NOTHING_MORE} CONNECTION LIMIT -1 "
              f"PASSWORD {literal(password_verifier)};\n"
            + f"ALTER ROLE {r} RESET ALL;\n"
            + _drop_memberships(role, keep=(member_of,))
            + f"GRANT {ident(member_of)} TO {r};\n")


def grant(database: str, role: str, password_verifier: str) -> str:
    """A linked app's role, made or made again: it logs in with the password, is a member of the owner role
    and of nothing else, and its sessions start as the owner role."""
    r = ident(role)
    return (_login_role(role, password_verifier, inherit=False, member_of=OWNER_ROLE)
            + f"ALTER ROLE {r} SET role = {literal(OWNER_ROLE)};\n"
            + f"GRANT CONNECT ON DATABASE {ident(database)} TO {r};\n")


def review_grant(role: str, password_verifier: str) -> str:
    """A review app's role with a database of its own: it logs in with the password, is a member of the review
    group (which pg_hba.conf lets in) and of nothing else: not of the owner role, so nothing of its parent's
    database is its; its own database it owns (review_database). INHERIT: it uses the public schema as its
    database's owner (pg_database_owner); the group holds nothing."""
    return _login_role(role, password_verifier, inherit=True, member_of=REVIEW_GROUP)


def review_database(database: str, role: str) -> str:
    """A review app's own database, owned by its role, that no other role may connect to. Statements of their own
    (CREATE DATABASE runs in no transaction): from template0, so nothing an app put in template1 comes along."""
    return (PRELUDE + f"CREATE DATABASE {ident(database)} OWNER {ident(role)} TEMPLATE template0;\n"
            + f"REVOKE ALL ON DATABASE {ident(database)} FROM PUBLIC;\n")


def drop_database(database: str) -> str:
    """A review app's database gone, its sessions ended (absent: nothing)."""
    return PRELUDE + f"DROP DATABASE IF EXISTS {ident(database)} WITH (FORCE);\n"


def database_exists(database: str) -> str:
    return PRELUDE + f"SELECT 1 FROM pg_database WHERE datname = {literal(database)};\n"


def revoke(database: str, role: str) -> str:
    """A linked app's role gone: no new session, its sessions ended, what it owned given to the owner role
    (large objects it made outside it), what it was granted revoked, then the role itself. Absent: nothing."""
    return PRELUDE + f"""\
DO $minipaas$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = {literal(role)}) THEN
    EXECUTE format('ALTER ROLE %I NOLOGIN', {literal(role)});
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {literal(role)};
    EXECUTE format('REASSIGN OWNED BY %I TO %I', {literal(role)}, {literal(OWNER_ROLE)});
    EXECUTE format('DROP OWNED BY %I', {literal(role)});
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM %I', {literal(database)}, {literal(role)});
    EXECUTE format('DROP ROLE %I', {literal(role)});
  END IF;
END
$minipaas$;
"""


def adopt(roles: tuple[str, ...] = ()) -> str:
    """Everything in the database that a superuser owns (an earlier version's apps made their tables as
    the superuser), or one of `roles` owns (app roles), given to the owner role: schemas, tables, views,
    sequences, types, domains, routines, large objects. Members of extensions stay the extension's."""
    listed = ", ".join(literal(r) for r in roles) or "''"
    owners = f"(SELECT oid FROM pg_roles WHERE rolsuper OR rolname IN ({listed}))"
    user_schema = "n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"

    def not_extension_member(catalog: str, column: str, deptypes: str = "'e'") -> str:
        return (f"NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = '{catalog}'::regclass "
                f"AND d.objid = {column} AND d.deptype IN ({deptypes}))")

    return PRELUDE + f"""\
DO $minipaas$
DECLARE r record;
BEGIN
  FOR r IN SELECT n.nspname FROM pg_namespace n
           WHERE n.nspowner IN {owners} AND {user_schema} AND {not_extension_member('pg_namespace', 'n.oid')} LOOP
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, {literal(OWNER_ROLE)});
  END LOOP;
  -- sequences owned by a column (serial, identity) and indexes go with their table
  FOR r IN SELECT c.oid::regclass AS name, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                  WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END AS what
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relowner IN {owners} AND {user_schema} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')
             AND {not_extension_member('pg_class', 'c.oid')}
             AND (c.relkind <> 'S' OR {not_extension_member('pg_class', 'c.oid', "'a', 'i'")}) LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I', r.what, r.name, {literal(OWNER_ROLE)});
  END LOOP;
  -- enums, ranges (and their multiranges) and domains; a table's row type and array types go with their own
  FOR r IN SELECT t.oid::regtype AS name, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END AS what
           FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE t.typowner IN {owners} AND {user_schema} AND t.typtype IN ('d', 'e', 'r', 'm')
             AND {not_extension_member('pg_type', 't.oid')} LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I', r.what, r.name, {literal(OWNER_ROLE)});
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS name, CASE p.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE'
                  ELSE 'FUNCTION' END AS what
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE p.proowner IN {owners} AND {user_schema} AND {not_extension_member('pg_proc', 'p.oid')} LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I', r.what, r.name, {literal(OWNER_ROLE)});
  END LOOP;
  FOR r IN SELECT m.oid FROM pg_largeobject_metadata m WHERE m.lomowner IN {owners} LOOP
    EXECUTE format('ALTER LARGE OBJECT %s OWNER TO %I', r.oid, {literal(OWNER_ROLE)});
  END LOOP;
END
$minipaas$;
"""


def set_superuser_password(password_verifier: str) -> str:
    return PRELUDE + f"ALTER ROLE {ident(SUPERUSER)} PASSWORD {literal(password_verifier)};\n"


def end_superuser_sessions() -> str:
    """The superuser's sessions over TCP ended (an earlier version's apps, once they have roles of their own)."""
    return ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE usename = {literal(SUPERUSER)} AND client_addr IS NOT NULL;\n")


# What the server says about the files just written (before it reloads them): the lines in error, or none.
CHECK_HBA = PRELUDE + """\
SELECT 'pg_hba.conf:' || line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL
UNION ALL
SELECT 'pg_ident.conf:' || line_number || ': ' || error FROM pg_ident_file_mappings WHERE error IS NOT NULL;
"""

# Roles and event triggers no linked app's role accounts for: an earlier version's apps had the superuser
# and may have left them (pgaccess.py says so; it does not guess what they are for).
STRANGERS = PRELUDE + f"""\
SELECT 'role ' || rolname FROM pg_roles
 WHERE rolname !~ '^pg_' AND rolname NOT IN ({literal(SUPERUSER)}, {literal(OWNER_ROLE)}, {literal(REVIEW_GROUP)})
   AND rolname !~ '^app_'
UNION ALL SELECT 'event trigger ' || evtname FROM pg_event_trigger
ORDER BY 1;
"""


def app_roles_query() -> str:
    """The app roles that exist (`app_*` members of the owner role), one a line."""
    return PRELUDE + f"""\
SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
 WHERE a.roleid = (SELECT oid FROM pg_roles WHERE rolname = {literal(OWNER_ROLE)}) AND m.rolname ~ '^app_'
 ORDER BY 1;
"""


def hba(database: str) -> str:
    """`pg_hba.conf`: the superuser and the owner role over the local socket only (which only `docker exec`
    reaches, as the container's postgres user); over TCP, members of the owner role (the apps' roles) with
    scram-sha-256, to the service's database only; review apps' roles (members of the review group) likewise, to
    the database whose CONNECT they have: their own (PUBLIC has it on none). No replication."""
    db = '"' + database + '"'  # quoted: a service named `all` or `replication` is not the keyword
    inside = f"{SUPERUSER},{OWNER_ROLE}"
    return f"""\
# Written by minipaas (addons/pgroles.py) each time it checks the service: edits here are replaced.
# TYPE  DATABASE  USER  [ADDRESS]  METHOD
local   all  {inside}  peer map={IDENT_MAP}
host    all  {inside}  all  reject
host    {db}  +{OWNER_ROLE}  all  scram-sha-256
host    all  +{REVIEW_GROUP}  all  scram-sha-256
"""


def ident_map() -> str:
    """`pg_ident.conf`: the container's postgres user may be the superuser or the owner role."""
    return f"""\
# Written by minipaas (addons/pgroles.py).
# MAPNAME  SYSTEM-USERNAME  PG-USERNAME
{IDENT_MAP}  postgres  {SUPERUSER}
{IDENT_MAP}  postgres  {OWNER_ROLE}
"""


# Extensions the owner role cannot drop (made by a superuser: an earlier version's apps, or an admin's
# `postgres:connect --superuser`): a restore keeps them as they are rather than drop and make them again.
FOREIGN_EXTENSIONS = PRELUDE + f"""\
SELECT extname FROM pg_extension
 WHERE extowner <> (SELECT oid FROM pg_roles WHERE rolname = {literal(OWNER_ROLE)}) ORDER BY 1;
"""


def restore_list(listing: str, kept: set[str]) -> str:
    """`pg_restore --list` output with the entries of the extensions in `kept` (and their comments) made
    comments: `pg_restore -L` then neither drops nor makes them."""
    lines = []
    for line in listing.splitlines():
        entry = line.split(";", 1)
        words = entry[1].split() if len(entry) == 2 and entry[0].strip().isdigit() else []
        named = words[4] if words[2:4] == ["EXTENSION", "-"] and len(words) > 4 else \
            words[5] if words[2:5] == ["COMMENT", "-", "EXTENSION"] and len(words) > 5 else None
        lines.append(f";{line}" if named in kept else line)
    return "\n".join(lines) + "\n"
