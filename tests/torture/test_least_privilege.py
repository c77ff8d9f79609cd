"""A deploy role with exactly the grants a careful DBA gives it, and nothing more.

The login role can do nothing but become the owner role (`--role`); the owner role has USAGE
and CREATE on the target schema only: no CREATE on the database, no superuser. The history
table, its event log, every migration and every rollback must work with that, in the default
schema `public` and in a `--schema` that exists and is owned by somebody else.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import Project, query, table_exists
from tests.torture.helpers import run


@dataclass
class Roles:
    login: str
    owner: str
    url: str  # the test database, logged in as `login`


@pytest.fixture
def roles(database_url: str) -> Iterator[Roles]:
    tag = uuid.uuid4().hex[:8]
    login, owner = f"deployer_{tag}", f"app_owner_{tag}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {owner} NOLOGIN")
        conn.execute(f"CREATE ROLE {login} LOGIN PASSWORD 'x' IN ROLE {owner}")
        # PostgreSQL 15+ gives PUBLIC nothing on schema public; older servers give CREATE.
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute("REVOKE CREATE ON DATABASE " + conninfo_to_dict(database_url)["dbname"] + " FROM PUBLIC")
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {owner}")
    params = conninfo_to_dict(database_url)
    params.update(user=login, password="x")
    try:
        yield Roles(login, owner, make_conninfo("", **params))
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for role in (login, owner):
                conn.execute(f"DROP OWNED BY {role} CASCADE")
                conn.execute(f"DROP ROLE {role}")


def two_migrations(project: Project) -> None:
    project.add(
        1, "accounts", "CREATE TABLE accounts (id int PRIMARY KEY, name text);\n", "DROP TABLE accounts;\n"
    )
    project.add(
        2, "accounts_name", "CREATE INDEX accounts_name ON accounts (name);\n", "DROP INDEX accounts_name;\n"
    )


def privileges(url: str, role: str) -> tuple[bool, bool]:
    return query(
        url,
        "SELECT has_database_privilege(%s, current_database(), 'CREATE'), "
        "(SELECT rolsuper FROM pg_roles WHERE rolname = %s)",
        (role, role),
    )[0]


def test_an_owner_role_with_create_on_public_only_applies_and_rolls_back(
    project: Project, database_url: str, roles: Roles
) -> None:
    two_migrations(project)
    assert privileges(database_url, roles.owner) == (False, False)

    up = run(project, "--role", roles.owner, "up", url=roles.url)
    status = run(project, "--role", roles.owner, "status", url=roles.url)
    down = run(project, "--role", roles.owner, "down", url=roles.url)

    assert up.returncode == 0, up.stderr
    assert status.returncode == 0, status.stderr
    assert down.returncode == 0, down.stderr
    assert query(database_url, "SELECT version, applied_by FROM schema_version") == [("1.1.0", roles.owner)]
    assert query(database_url, "SELECT tableowner FROM pg_tables WHERE tablename = 'accounts'") == [
        (roles.owner,)
    ]


def test_a_history_schema_owned_by_someone_else_is_used_as_it_is(
    project: Project, database_url: str, roles: Roles
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA deploy")  # owned by the DBA, not by the deploy roles
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA deploy TO {roles.owner}")
    two_migrations(project)

    up = run(project, "--role", roles.owner, "--schema", "deploy", "up", url=roles.url)
    again = run(project, "--role", roles.owner, "--schema", "deploy", "up", url=roles.url)

    assert up.returncode == 0, up.stderr
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr
    assert table_exists(database_url, "deploy.schema_version")
    owner = query(database_url, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'deploy'")[
        0
    ][0]
    assert owner not in (roles.owner, roles.login), "the schema was left as the DBA made it"
    assert query(database_url, "SELECT count(*) FROM deploy.schema_version") == [(2,)]


def test_a_missing_history_schema_without_create_on_the_database_is_a_clear_error(
    project: Project, database_url: str, roles: Roles
) -> None:
    two_migrations(project)

    result = run(project, "--role", roles.owner, "--schema", "nowhere", "up", url=roles.url)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "nowhere" in result.stderr and "permission denied" in result.stderr
    assert not table_exists(database_url, "nowhere.schema_version")


def test_the_rendered_script_run_by_the_deploy_role_works_with_the_same_grants(
    project: Project, database_url: str, roles: Roles
) -> None:
    from tests.integration.test_render import psql, render

    two_migrations(project)
    script = render(project, "up", options=("--role", roles.owner))

    result = psql(roles.url, script)

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT count(*), min(applied_by) FROM schema_version") == [(2, roles.owner)]
