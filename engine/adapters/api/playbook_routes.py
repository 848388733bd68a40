"""API routes about playbooks: what is loaded, why the newest directory content was rejected, and a reload."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from engine.adapters.api.auth import Role, TokenBook, requirement
from engine.adapters.playbook_reloader import PlaybookReloader, ReloadStatus
from engine.adapters.yaml_documents import DocumentProblem


class ProblemOut(BaseModel):
    file: str
    line: int | None
    field: str
    message: str

    @classmethod
    def of(cls, problem: DocumentProblem) -> ProblemOut:
        return cls(file=str(problem.path), line=problem.line, field=problem.field, message=problem.message)


class PlaybooksOut(BaseModel):
    loaded_at: datetime
    playbooks: list[str]
    valid: bool
    problems: list[ProblemOut]
    # About the active set: valid, but worth the author's attention.
    warnings: list[ProblemOut]

    @classmethod
    def of(cls, status: ReloadStatus) -> PlaybooksOut:
        return cls(
            loaded_at=datetime.fromtimestamp(status.loaded_at, tz=UTC),
            playbooks=list(status.playbooks),
            valid=not status.problems,
            problems=[ProblemOut.of(problem) for problem in status.problems],
            warnings=[ProblemOut.of(warning) for warning in status.warnings],
        )


def playbook_router(reloader: PlaybookReloader, tokens: TokenBook) -> APIRouter:
    router = APIRouter(prefix="/api/v1/playbooks", tags=["playbooks"])

    @router.get("", dependencies=[Depends(requirement(tokens, Role.VIEWER))])
    async def list_playbooks() -> PlaybooksOut:
        """The active playbooks and, if the newest directory content was rejected, its problems."""
        return PlaybooksOut.of(reloader.status)

    @router.post("/reload", dependencies=[Depends(requirement(tokens, Role.ADMIN))])
    async def reload_playbooks() -> PlaybooksOut:
        """Validate the directory now; the active set changes only if every file is valid."""
        await reloader.reload_in_thread()
        return PlaybooksOut.of(reloader.status)

    return router
