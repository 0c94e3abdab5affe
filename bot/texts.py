"""Every sentence the bot says, in English and Russian.

The language follows the user's Telegram interface language: Russian for `ru`, English otherwise.
"""

from __future__ import annotations

from aiogram.types import User

EN, RU = "en", "ru"

TEXTS: dict[str, dict[str, str]] = {
    "greeting": {
        EN: "Hello, {name}! I recognise landmarks in photos.",
        RU: "Здравствуйте, {name}! Я узнаю достопримечательности на фотографиях.",
    },
    "help": {
        EN: (
            "Send me a photo of a landmark and I will tell you what it is.\n"
            "• Send it as a photo or as a file: JPG, PNG, WebP or HEIC, up to {max_mb} MB.\n"
            "• I answer with the most similar photos from my gallery, best guess first.\n"
            "• Under the answer: “More results”, “Show on map” and “Results per photo”.\n"
            "• /k N sets how many results I show, 1 to 10 (now {k}).\n"
            "• /help shows this message."
        ),
        RU: (
            "Пришлите фото достопримечательности, и я скажу, что это.\n"
            "• Можно фото или файлом: JPG, PNG, WebP или HEIC, до {max_mb} МБ.\n"
            "• В ответ пришлю самые похожие фото из моей коллекции, лучшая догадка первой.\n"
            "• Под ответом кнопки «Ещё результаты», «Показать на карте» и «Результатов на фото».\n"
            "• /k N — сколько результатов показывать, от 1 до 10 (сейчас {k}).\n"
            "• /help — эта справка."
        ),
    },
    "not_an_image": {
        EN: "This file is not an image I can search.",
        RU: "Этот файл — не изображение, которое я умею искать.",
    },
    "unsupported_image": {
        EN: "I can search JPG, PNG, WebP and HEIC images; please convert this one or send it as a photo.",
        RU: "Я ищу по JPG, PNG, WebP и HEIC; пожалуйста, пришлите изображение как фото или в одном из этих форматов.",
    },
    "too_large": {
        EN: "This image is too large: please send one under {max_mb} MB, or send it as a photo.",
        RU: "Изображение слишком большое: пришлите файл меньше {max_mb} МБ или отправьте его как фото.",
    },
    "sticker": {
        EN: "Nice sticker! Send me a photo of a landmark, though.",
        RU: "Отличный стикер! Но мне нужна фотография достопримечательности.",
    },
    "bad_image": {
        EN: "I could not read this image: the file may be damaged or incomplete. Please try another photo.",
        RU: "Не получилось прочитать изображение: возможно, файл повреждён или загружен не полностью. "
        "Попробуйте другое фото.",
    },
    "api_down": {
        EN: "Sorry, the landmark search is not answering right now. Please try again in a minute.",
        RU: "Извините, поиск достопримечательностей сейчас не отвечает. Попробуйте ещё раз через минуту.",
    },
    "failed": {
        EN: "Sorry, something went wrong. Please try again.",
        RU: "Извините, что-то пошло не так. Попробуйте ещё раз.",
    },
    "busy": {
        EN: "I am still working on your previous photos; send the rest again in a moment.",
        RU: "Я ещё обрабатываю ваши предыдущие фото; пришлите остальные чуть позже.",
    },
    "best_guess": {
        EN: "This looks like {landmark}, confidence {confidence}.",
        RU: "Похоже, это {landmark}, уверенность {confidence}.",
    },
    "not_a_landmark": {
        EN: "This photo doesn't look like a landmark to me. Above are the closest photos in my gallery: they are "
        "not a match.",
        RU: "Кажется, на этом фото нет достопримечательности. Выше — самые похожие фото из моей коллекции, но "
        "это не совпадение.",
    },
    "unknown_landmark": {
        EN: "I don't recognise a landmark I know in this photo, sorry. Above are the closest photos in my "
        "gallery: they are not a match.",
        RU: "Не узнаю на этом фото ни одной знакомой мне достопримечательности, извините. Выше — самые похожие "
        "фото из моей коллекции, но это не совпадение.",
    },
    "over_99": {EN: "over 99%", RU: "более 99%"},
    "under_1": {EN: "under 1%", RU: "менее 1%"},
    "in_your_photo": {EN: "🔲 {landmark} in your photo", RU: "🔲 {landmark} на вашем фото"},
    "also_in_your_photo": {EN: "Also in it: {landmarks}", RU: "Также на нём: {landmarks}"},
    "taken_from": {
        EN: "📍 Your photo was taken {distance} from it.",
        RU: "📍 Ваше фото снято в {distance} от неё.",
    },
    "shared_from": {
        EN: "📍 You shared a location {distance} from it.",
        RU: "📍 Место, которым вы поделились, — в {distance} от неё.",
    },
    "location_saved": {
        EN: "📍 Thanks. For the next hour, landmarks near this place come first when you send photos.",
        RU: "📍 Спасибо. В ближайший час достопримечательности рядом с этим местом будут первыми в ответах на ваши фото.",
    },
    "metres": {EN: "{n} m", RU: "{n} м"},
    "kilometres": {EN: "{n} km", RU: "{n} км"},
    "other_possibilities": {EN: "Other possibilities:", RU: "Другие варианты:"},
    "page": {
        EN: "Results {first}–{last}: {landmarks}.",
        RU: "Результаты {first}–{last}: {landmarks}.",
    },
    "nothing_found": {
        EN: "I found nothing to compare with.",
        RU: "Мне не с чем сравнить это фото.",
    },
    "no_more": {
        EN: "That was everything I have for this photo.",
        RU: "Больше результатов для этого фото нет.",
    },
    "expired": {
        EN: "This answer is too old; please send the photo again.",
        RU: "Этот ответ устарел; пришлите фото ещё раз.",
    },
    "button_more": {EN: "More results ▶", RU: "Ещё результаты ▶"},
    "button_map": {EN: "📍 Show on map", RU: "📍 Показать на карте"},
    "button_k": {EN: "⚙ Results per photo: {k}", RU: "⚙ Результатов на фото: {k}"},
    "k_prompt": {
        EN: "How many results should I show per photo? Now {k}. Tap a number or send /k N (1 to 10).",
        RU: "Сколько результатов показывать на одно фото? Сейчас {k}. Нажмите число или отправьте /k N (от 1 до 10).",
    },
    "k_range": {
        EN: "Results per photo must be a number from 1 to 10.",
        RU: "Число результатов на фото должно быть от 1 до 10.",
    },
    "k_set": {
        EN: "Done: results per photo set to {k}.",
        RU: "Готово: теперь результатов на одно фото: {k}.",
    },
    "cmd_start": {EN: "Start and greeting", RU: "Начало и приветствие"},
    "cmd_help": {EN: "How to use the bot", RU: "Как пользоваться ботом"},
    "cmd_k": {EN: "Results per photo, 1 to 10", RU: "Результатов на фото, от 1 до 10"},
}


def language(user: User | None) -> str:
    code = (user.language_code or "") if user else ""
    return RU if code.lower().startswith("ru") else EN


def t(key: str, lang: str, **values: object) -> str:
    return TEXTS[key][lang].format(**values)
