"""API tokens for tests: one per role, with known secrets."""

from engine.adapters.api.auth import ApiToken, Role, TokenBook, hash_secret

SECRETS = {role: f"test-secret-{role.name.lower()}" for role in Role}
BOOK = TokenBook(ApiToken(f"test-{role.name.lower()}", role, hash_secret(secret)) for role, secret in SECRETS.items())


def bearer(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[role]}"}


# The same tokens as AIOPS_API_TOKENS would configure them.
SPEC = ",".join(
    f"test-{role.name.lower()}:{role.name.lower()}:{hash_secret(secret)}" for role, secret in SECRETS.items()
)
