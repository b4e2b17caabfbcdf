"""Dependencies that hand the lifespan's objects to routes (tests can override them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.inference.runner import InferenceRunner
from app.inference.store import ModelStore


def get_store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.store
    return store


def get_runner(request: Request) -> InferenceRunner:
    runner: InferenceRunner = request.app.state.runner
    return runner


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[ModelStore, Depends(get_store)]
RunnerDep = Annotated[InferenceRunner, Depends(get_runner)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
