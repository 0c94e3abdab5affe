"""How many results a user gets per photo: `/k N`, or `/k` and a tap on a number."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, User

from bot.callback_data import OpenSettings, SetK
from bot.storage import Store
from bot.texts import language, t

K_CHOICES = range(1, 11)


def k_keyboard() -> InlineKeyboardMarkup:
    buttons = [InlineKeyboardButton(text=str(k), callback_data=SetK(k=k).pack()) for k in K_CHOICES]
    return InlineKeyboardMarkup(inline_keyboard=[buttons[:5], buttons[5:]])


async def _prompt(user: User, store: Store, first: str = "") -> dict:
    text = t("k_prompt", language(user), k=await store.get_k(user.id))
    return {"text": f"{first}\n\n{text}" if first else text, "reply_markup": k_keyboard()}


async def on_k_command(message: Message, command: CommandObject, store: Store) -> None:
    user = message.from_user
    argument = (command.args or "").strip()
    if argument.isdigit() and int(argument) in K_CHOICES:
        await store.set_k(user.id, int(argument))
        await message.answer(t("k_set", language(user), k=int(argument)))
    else:
        # `/k` alone asks; `/k 99` or `/k five` also says why it was not taken.
        await message.answer(**await _prompt(user, store, t("k_range", language(user)) if argument else ""))


async def on_open_settings(callback: CallbackQuery, store: Store) -> None:
    await callback.answer()
    chat_id = callback.message.chat.id if callback.message else callback.from_user.id
    await callback.bot.send_message(chat_id, **await _prompt(callback.from_user, store))


async def on_set_k(callback: CallbackQuery, callback_data: SetK, store: Store) -> None:
    if callback_data.k not in K_CHOICES:
        await callback.answer()
        return
    await store.set_k(callback.from_user.id, callback_data.k)
    text = t("k_set", language(callback.from_user), k=callback_data.k)
    await callback.answer(text)
    # Messages older than 48 hours arrive as InaccessibleMessage and cannot be edited.
    if isinstance(callback.message, Message):
        await callback.message.edit_text(text)


def create_router() -> Router:
    router = Router(name="settings")
    router.message.register(on_k_command, Command("k"))
    router.callback_query.register(on_open_settings, OpenSettings.filter())
    router.callback_query.register(on_set_k, SetK.filter())
    return router
