"""Callback data of the inline buttons (Telegram allows 64 bytes, so only ids travel)."""

from aiogram.filters.callback_data import CallbackData


class MoreResults(CallbackData, prefix="more"):
    search_id: int
    page: int


class ShowOnMap(CallbackData, prefix="map"):
    search_id: int


class OpenSettings(CallbackData, prefix="settings"):
    pass


class SetK(CallbackData, prefix="k"):
    k: int
