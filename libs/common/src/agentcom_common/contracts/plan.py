"""A goal's plan as the model answers it: `Plan`, its `PlannedTask`s (the hub's planner reads it
from JSON or XML, `agentcom_hubfsm.goals.planparse`; `documents.PlanDocument` is its XML form).
The rules a plan must pass are the hub's (`agentcom_hubfsm.goals.plan.check`)."""

from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from agentcom_common.contracts.task import Tier

# `pattern`: what the JSON schema can say of "not blank once stripped" (clients generating
# requests from the schema, schemathesis among them, would send "\n" as a path otherwise), and
# of "no NUL" (`web.InputLimits` refuses NUL everywhere; an explicit pattern replaces the
# document's default `openapi.STORABLE`, so it must say so itself)
SOME: Final = r"^[^\x00]*[^\s\x00][^\x00]*$"
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=SOME)
]
Command = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, pattern=SOME)
]
RepoPath = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000, pattern=SOME)
]
Ref = (
    int
    | Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=SOME)
    ]
)


def _split(value: Any, separators: str) -> Any:
    """A list field given as one string (models do that): split it on `separators`."""
    if not isinstance(value, str):
        return value
    for sep in separators[1:]:
        value = value.replace(sep, separators[0])
    return [part.strip() for part in value.split(separators[0]) if part.strip()]


class PlannedTask(BaseModel):
    """One task of a plan; the limits are the queue's (`SubmitTask`) so a checked plan submits."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    title: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=SOME)
    ]
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000, pattern=SOME)
    ]
    success_criteria: list[Text] = Field(min_length=1, max_length=50)
    verification: list[Command] = Field(
        min_length=1, max_length=20, description="Shell commands; each must exit 0."
    )
    depends_on: list[Ref] = Field(default_factory=list[Ref], max_length=100)
    files: list[RepoPath] = Field(
        default_factory=list[str], max_length=100, description="Existing files it changes."
    )
    new_files: list[RepoPath] = Field(default_factory=list[str], max_length=100)
    tier: Tier = Tier.STANDARD
    estimated_tokens: int = Field(ge=0, le=1_000_000_000)
    estimated_usd: float = Field(default=0.0, ge=0, le=1_000_000)

    @field_validator("success_criteria", "verification", mode="before")
    @classmethod
    def _lines(cls, value: Any) -> Any:
        return _split(value, "\n")

    @field_validator("depends_on", "files", "new_files", mode="before")
    @classmethod
    def _items(cls, value: Any) -> Any:
        return _split(value, ",\n ")

    @field_validator("depends_on", mode="after")
    @classmethod
    def _numbers(cls, value: list[int | str]) -> list[int | str]:
        # "2" from a model (or any XML) is task 2; a key is never all digits (see `check`)
        return [int(ref) if isinstance(ref, str) and ref.isdigit() else ref for ref in value]

    @field_validator("key", mode="after")
    @classmethod
    def _no_blank_key(cls, value: str | None) -> str | None:
        return value or None

    def writes(self) -> list[str]:
        return [*self.files, *self.new_files]


class Plan(BaseModel):
    """What the model answers. `tasks` is not capped here: `check` says how many are too many."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    summary: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""
    tasks: list[PlannedTask]
