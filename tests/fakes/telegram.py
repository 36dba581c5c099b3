"""A fake Telegram Bot API that checks every call against the official method and type tables.

Parameters are validated against PaulSonOfLars' api.json (names, required flags, primitive and
object types, recursively). A handful of methods a notification bot needs are implemented with
state; the others validate and then answer 400. The webhook side pushes JSON updates with the
secret header, as Telegram does.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import math
import re
import secrets
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes import serve
from tests.fakes.twilio import FakeClock
from tests.paths import shared

SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice",
        "upload_voice", "upload_document", "choose_sticker", "find_location",
        "record_video_note", "upload_video_note",
    }
)  # fmt: skip
# Sends that count against flood limits.
RATE_LIMITED = frozenset({"sendMessage", "editMessageText"})
# Update types Telegram leaves out when allowed_updates is empty or unset.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
HTML_TAGS = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
        "a", "tg-emoji", "code", "pre", "blockquote", "tg-time",
    }
)  # fmt: skip
MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


@functools.cache
def bot_api() -> dict[str, Any]:
    """The Bot API method and type tables (api.json)."""
    return json.loads(shared("telegram", "api.json").read_text(encoding="utf-8"))


class TelegramError(Exception):
    """An error answered as {"ok": false, "error_code", "description"[, "parameters"]}."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(detail: str) -> TelegramError:
    return TelegramError(400, f"Bad Request: {detail}")


@dataclass(frozen=True)
class Limit:
    """At most `count` sends within any `seconds`-long window."""

    count: int
    seconds: float


@dataclass
class Push:
    """One update the fake pushed to the webhook and what the app answered."""

    url: str
    update: dict[str, Any]
    headers: dict[str, str]
    status: int
    text: str


# ---- validation against api.json -------------------------------------------------------------


class _Invalid(ValueError):
    pass


def coerce(type_name: str, value: Any, *, encoded: bool) -> Any:
    """Check `value` against one api.json type and return it decoded.

    `encoded` values come from a query string, a form or multipart: primitives are text and
    objects or arrays are JSON strings.
    """
    if type_name.startswith("Array of "):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise _Invalid(f"can't parse {type_name} JSON") from None
        if not isinstance(value, list):
            raise _Invalid(f"expected {type_name}")
        inner = type_name.removeprefix("Array of ")
        return [coerce(inner, item, encoded=False) for item in value]
    if type_name == "Integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        raise _Invalid("expected Integer")
    if type_name == "Float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _Invalid("expected Float")
    if type_name in ("Boolean", "True"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise _Invalid("expected Boolean")
    if type_name == "String":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise _Invalid("expected String")
    if type_name == "InputFile":
        if isinstance(value, str | web.FileField):
            return value
        raise _Invalid("expected InputFile or String")
    if isinstance(value, str) and (encoded or type_name in bot_api()["types"]):
        try:
            value = json.loads(value)
        except ValueError:
            raise _Invalid(f"can't parse {type_name} JSON object") from None
    return check_object(type_name, value)


def check_object(type_name: str, value: Any) -> dict[str, Any]:
    """Validate a JSON object against an api.json type (subtypes: any one of them)."""
    spec = bot_api()["types"].get(type_name)
    if spec is None:
        raise _Invalid(f"unknown type {type_name}")
    if not isinstance(value, dict):
        raise _Invalid(f"expected {type_name} object")
    if "subtypes" in spec:
        problems = []
        for subtype in spec["subtypes"]:
            try:
                return check_object(subtype, value)
            except _Invalid as exc:
                problems.append(str(exc))
        raise _Invalid(f"not any {type_name}: {'; '.join(problems)}")
    fields = {f["name"]: f for f in spec.get("fields", [])}
    for name in value:
        if name not in fields:
            raise _Invalid(f"{type_name} has no field {name!r}")
    checked: dict[str, Any] = {}
    for name, field_spec in fields.items():
        if name not in value:
            if field_spec["required"]:
                raise _Invalid(f"{type_name}.{name} is required")
            continue
        checked[name] = _first_match(field_spec["types"], value[name], encoded=False)
    _type_rules(type_name, checked)
    return checked


def _first_match(types: list[str], value: Any, *, encoded: bool) -> Any:
    problems = []
    for type_name in types:
        try:
            return coerce(type_name, value, encoded=encoded)
        except _Invalid as exc:
            problems.append(str(exc))
    raise _Invalid(" or ".join(problems))


def _type_rules(type_name: str, value: Mapping[str, Any]) -> None:
    """Constraints that api.json only states in prose."""
    if type_name == "InlineKeyboardButton":
        data = value.get("callback_data")
        if data is not None and not 1 <= len(data.encode()) <= 64:
            raise TelegramError(400, "Bad Request: BUTTON_DATA_INVALID")
        kinds = set(value) - {"text", "icon_custom_emoji_id", "style"}
        if len(kinds) != 1:
            raise bad_request(
                "can't parse inline keyboard button: "
                "Text buttons are unallowed in the inline keyboard"
            )


def visible_text(text: str, parse_mode: str | None) -> str:
    """Text as the user sees it after entity parsing; raises like Telegram on bad markup."""
    if parse_mode is None:
        return text
    mode = parse_mode.lower()
    if mode == "html":
        return _html_text(text)
    if mode == "markdownv2":
        return _markdown_v2_text(text)
    if mode == "markdown":
        return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).translate(str.maketrans("", "", "*_`"))
    raise bad_request(f"unsupported parse_mode {parse_mode!r}")


def _html_text(text: str) -> str:
    out, pos = [], 0
    for match in re.finditer(r"<(/?)([a-zA-Z-]+)([^<>]*)>|<", text):
        if match.group(2) is None:
            raise bad_request(
                f"can't parse entities: Unsupported start tag at byte offset "
                f"{len(text[: match.start()].encode())}"
            )
        if match.group(2).lower() not in HTML_TAGS:
            raise bad_request(
                f'can\'t parse entities: Unsupported start tag "{match.group(2)}" at byte offset '
                f"{len(text[: match.start()].encode())}"
            )
        out.append(text[pos : match.start()])
        pos = match.end()
    out.append(text[pos:])
    return html.unescape("".join(out))


def _markdown_v2_text(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
        elif text.startswith("```", i):
            end = text.find("```", i + 3)
            if end < 0:
                raise bad_request("can't parse entities: Can't find end of Pre entity")
            block = text[i + 3 : end]
            first, _, rest = block.partition("\n")
            out.append(re.sub(r"\\([`\\])", r"\1", rest if rest and " " not in first else block))
            i = end + 3
        elif ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise bad_request("can't parse entities: Can't find end of Code entity")
            out.append(re.sub(r"\\([`\\])", r"\1", text[i + 1 : end]))
            i = end + 1
        elif ch == "]" and text.startswith("(", i + 1):
            end = i + 2
            while end < n and text[end] != ")":
                end += 2 if text[end] == "\\" else 1
            i = end + 1
        elif ch in "*_~[" or text.startswith("||", i) or text.startswith("![", i):
            i += 2 if text.startswith(("||", "!["), i) else 1
        elif ch == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1
        elif ch in MARKDOWN_V2_RESERVED:
            raise bad_request(
                f"can't parse entities: Character '{ch}' is reserved and must be escaped "
                "with the preceding '\\'"
            )
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# ---- the fake ----------------------------------------------------------------------------------


class FakeTelegram:
    """Fake Bot API server at `{url}/bot{token}/{method}`; use as `async with`."""

    def __init__(
        self,
        token: str | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        per_chat: Limit | None = Limit(1, 1.0),
        per_bot: Limit | None = Limit(30, 1.0),
        per_group: Limit | None = Limit(20, 60.0),
        allow_http_webhook: bool = False,
        username: str = "shipmate_test_bot",
    ) -> None:
        bot_id = secrets.randbelow(9 * 10**9) + 10**9
        self.token = token or f"{bot_id}:{secrets.token_urlsafe(26)}"
        self.clock = clock or FakeClock()
        self.per_chat, self.per_bot, self.per_group = per_chat, per_bot, per_group
        self.allow_http_webhook = allow_http_webhook
        self.me = {
            "id": int(self.token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": "Shipmate",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.url = ""  # set when served
        # what happened, for assertions
        self.calls: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.answered: dict[str, dict[str, Any]] = {}
        self.pushes: list[Push] = []
        self.webhook: dict[str, Any] | None = None
        # knobs and state
        self.blocked: set[int | str] = set()
        self.chats: dict[int | str, dict[str, Any]] = {}
        self.proxies: dict[str, str] = {}
        self.messages: dict[tuple[int | str, int], dict[str, Any]] = {}
        self._forced: list[int] = []
        self._open_queries: set[str] = set()
        self._sends: dict[tuple[str, int | str | None], deque[float]] = defaultdict(deque)
        self._next_message_id: dict[int | str, int] = defaultdict(lambda: 1)
        self._update_id = secrets.randbelow(10**8) + 10**8
        self._pending: list[dict[str, Any]] = []
        self._new_update = asyncio.Event()
        self._last_error: tuple[int, str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stack = AsyncExitStack()
        self.app = web.Application()
        self.app.router.add_route("*", "/bot{token}/{method}", self._handle)

    async def __aenter__(self) -> FakeTelegram:
        self.url = await self._stack.enter_async_context(serve(self.app))
        self._session = await self._stack.enter_async_context(aiohttp.ClientSession())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self._session = None

    @property
    def api_url(self) -> str:
        """Base URL for python-telegram-bot: `Bot(token, base_url=fake.api_url)`."""
        return f"{self.url}/bot"

    # ---- knobs -------------------------------------------------------------------------

    def force_retry_after(self, seconds: int, *, times: int = 1) -> None:
        """Answer the next `times` calls with 429 and parameters.retry_after = `seconds`."""
        self._forced.extend([seconds] * times)

    def proxy(self, public_base: str, local_base: str) -> None:
        """Deliver webhook pushes meant for `public_base...` to `local_base...`."""
        self.proxies[public_base.rstrip("/")] = local_base.rstrip("/")

    # ---- update builders and pusher ----------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str = "Ana",
        *,
        language_code: str | None = "hr",
        **extra: Any,
    ) -> dict[str, Any]:
        """A realistic User object for a human."""
        user = {"id": user_id, "is_bot": False, "first_name": first_name}
        if language_code:
            user["language_code"] = language_code
        return user | extra

    def message_update(
        self,
        chat_id: int,
        text: str,
        *,
        user: dict[str, Any] | None = None,
        message_thread_id: int | None = None,
        **user_fields: Any,
    ) -> dict[str, Any]:
        """An Update with a text `message` from a user in the private chat `chat_id`.

        A leading /command gets its bot_command entity. `user_fields` go to `user()`; in a group
        (negative `chat_id`) a random user speaks unless `user` is given.
        """
        user_id = chat_id if chat_id > 0 else 10**9 + secrets.randbelow(10**9)
        sender = user or self.user(user_id, **user_fields)
        chat = self.chats.setdefault(chat_id, self._chat(chat_id, sender))
        message: dict[str, Any] = {
            "message_id": self._message_id(chat_id),
            "from": sender,
            "chat": chat,
            "date": self._now(),
            "text": text,
        }
        command = re.match(r"/[A-Za-z0-9_]+(@\w+)?", text)
        if command:
            length = len(command.group(0).encode("utf-16-le")) // 2
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
            message["is_topic_message"] = True
        self.messages[(chat_id, message["message_id"])] = message
        return {"update_id": self._next_update_id(), "message": message}

    def callback_query_update(
        self,
        chat_id: int,
        data: str,
        *,
        message_id: int | None = None,
        user: dict[str, Any] | None = None,
        **user_fields: Any,
    ) -> dict[str, Any]:
        """An Update with a `callback_query` for a button on the bot's message `message_id`.

        Without `message_id`, the bot's latest message in that chat is used.
        """
        sender = user or self.user(chat_id, **user_fields)
        if message_id is None:
            own = [mid for (cid, mid), m in self.messages.items() if cid == chat_id
                   and m.get("from", {}).get("id") == self.me["id"]]  # fmt: skip
            if not own:
                raise LookupError(f"the bot has sent no message to chat {chat_id}")
            message_id = max(own)
        query_id = str(secrets.randbelow(10**18) + 10**18)
        self._open_queries.add(query_id)
        query = {
            "id": query_id,
            "from": sender,
            "message": self.messages[(chat_id, message_id)],
            "chat_instance": str(abs(hash((self.me["id"], chat_id)))),
            "data": data,
        }
        return {"update_id": self._next_update_id(), "callback_query": query}

    async def push_update(
        self, update: dict[str, Any], *, secret_token: str | None = None, forged: bool = False
    ) -> Push | None:
        """POST `update` to the webhook with the secret header; `forged` sends a wrong secret.

        Without a webhook the update waits for getUpdates and None is returned; updates the
        webhook's allowed_updates exclude are dropped (None).
        """
        kind = next(key for key in update if key != "update_id")
        if self.webhook is None:
            self._pending.append(update)
            self._new_update.set()
            return None
        allowed = self.webhook.get("allowed_updates") or []
        if (allowed and kind not in allowed) or (not allowed and kind in OPT_IN_UPDATES):
            return None
        if self._session is None:
            raise RuntimeError("FakeTelegram is not running: use `async with FakeTelegram()`")
        headers = {"Content-Type": "application/json"}
        secret = secret_token or self.webhook.get("secret_token")
        if forged:
            secret = "forged-" + secrets.token_urlsafe(16)
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        url = self.webhook["url"]
        for public, local in self.proxies.items():
            if url == public or url.startswith(public + "/") or url.startswith(public + "?"):
                url = local + url[len(public) :]
                break
        async with self._session.post(url, data=json.dumps(update), headers=headers) as response:
            text = await response.text()
            push = Push(url, update, headers, response.status, text)
        if not 200 <= push.status < 300:
            self._last_error = (self._now(), f"Wrong response from the webhook: {push.status}")
        self.pushes.append(push)
        return push

    async def push_message(self, chat_id: int, text: str, **kwargs: Any) -> Push | None:
        """Build a message update and push it."""
        return await self.push_update(self.message_update(chat_id, text, **kwargs))

    async def push_callback(self, chat_id: int, data: str, **kwargs: Any) -> Push | None:
        """Build a callback_query update and push it."""
        return await self.push_update(self.callback_query_update(chat_id, data, **kwargs))

    # ---- HTTP --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        call: dict[str, Any] = {
            "http_method": request.method,
            "method": request.match_info["method"],
            "content_type": request.content_type if request.body_exists else None,
            "params": {},
        }
        try:
            if not secrets.compare_digest(
                request.match_info["token"].encode(), self.token.encode()
            ):
                raise TelegramError(401, "Unauthorized")
            method = self._method_name(request.match_info["method"])
            call["method"] = method
            raw = await self._raw_params(request)
            params = self._validate(method, raw)
            call["params"] = params
            if self._forced:
                retry = self._forced.pop(0)
                raise TelegramError(
                    429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
                )
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                raise bad_request(f"method {method} is not supported by the fake")
            result = await handler(params)
            body: dict[str, Any] = {"ok": True, "result": result}
            response = web.json_response(body)
        except TelegramError as exc:
            body = exc.body()
            response = web.json_response(body, status=exc.status)
        call["status"] = response.status
        call["response"] = body
        self.calls.append(call)
        return response

    @staticmethod
    def _method_name(name: str) -> str:
        methods = {key.lower(): key for key in bot_api()["methods"]}
        if name.lower() not in methods:
            raise TelegramError(404, "Not Found")
        return methods[name.lower()]

    @staticmethod
    async def _raw_params(request: web.Request) -> dict[str, tuple[Any, bool]]:
        raw: dict[str, tuple[Any, bool]] = {k: (v, True) for k, v in request.query.items()}
        if not request.body_exists:
            return raw
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON request body") from None
            if not isinstance(body, dict):
                raise bad_request("the JSON request body must be an object")
            raw.update({key: (value, False) for key, value in body.items()})
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            raw.update({key: (value, True) for key, value in form.items()})
        elif await request.read():
            raise bad_request(f"unsupported content type {request.content_type}")
        return raw

    @staticmethod
    def _validate(method: str, raw: Mapping[str, tuple[Any, bool]]) -> dict[str, Any]:
        fields = {f["name"]: f for f in bot_api()["methods"][method].get("fields", [])}
        attachments = {name for name, (value, _) in raw.items() if isinstance(value, web.FileField)}
        params: dict[str, Any] = {}
        for name, (value, encoded) in raw.items():
            if name in attachments and name not in fields:
                continue  # a file referenced as attach://name from another parameter
            if name not in fields:
                raise bad_request(f'parameter "{name}" is not accepted by {method}')
            try:
                params[name] = _first_match(fields[name]["types"], value, encoded=encoded)
            except _Invalid as exc:
                raise bad_request(f'wrong parameter "{name}": {exc}') from None
        for name, field_spec in fields.items():
            if field_spec["required"] and name not in params:
                raise bad_request("message text is empty" if name == "text" else f"{name} is empty")
        return params

    # ---- implemented methods -------------------------------------------------------------

    async def _api_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.me

    async def _api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params["chat_id"]
        text = visible_text(params["text"], params.get("parse_mode"))
        if not text.strip():
            raise bad_request("message text is empty")
        if len(text) > 4096:
            raise bad_request("message is too long")
        self._gate(chat_id)
        chat = self.chats.get(chat_id) or self._chat(chat_id)
        message: dict[str, Any] = {
            "message_id": self._message_id(chat_id),
            "from": self.me,
            "chat": chat,
            "date": self._now(),
            "text": text,
        }
        if "message_thread_id" in params:
            message["message_thread_id"] = params["message_thread_id"]
            message["is_topic_message"] = True
        markup = params.get("reply_markup")
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self.messages[(chat_id, message["message_id"])] = message
        self.sent.append(params)
        return message

    async def _api_editMessageText(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        text = visible_text(params["text"], params.get("parse_mode"))
        if not text.strip():
            raise bad_request("message text is empty")
        if "inline_message_id" in params:
            return True
        if "chat_id" not in params or "message_id" not in params:
            raise bad_request("message identifier is not specified")
        chat_id = params["chat_id"]
        message = self.messages.get((chat_id, params["message_id"]))
        if message is None or message["from"]["id"] != self.me["id"]:
            raise bad_request("message to edit not found")
        markup = params.get("reply_markup")
        if message["text"] == text and message.get("reply_markup") == markup:
            raise bad_request(NOT_MODIFIED)
        self._gate(chat_id)
        message["text"], message["edit_date"] = text, self._now()
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)  # editing without a keyboard removes it
        return message

    async def _api_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        query_id = params["callback_query_id"]
        if query_id not in self._open_queries:
            raise bad_request(QUERY_TOO_OLD)
        if len(params.get("text", "")) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        self._open_queries.discard(query_id)
        self.answered[query_id] = params
        return True

    async def _api_setWebhook(self, params: dict[str, Any]) -> bool:
        url = params["url"]
        if not url:
            return await self._api_deleteWebhook(params)
        if not url.startswith("https://") and not (
            self.allow_http_webhook and url.startswith("http://")
        ):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not SECRET_TOKEN.match(secret):
            raise bad_request("secret token contains unallowed characters")
        if not 1 <= params.get("max_connections", 40) <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        if params.get("drop_pending_updates"):
            self._pending.clear()
        previous = self.webhook or {}
        self.webhook = {
            "url": url,
            "secret_token": secret,
            "max_connections": params.get("max_connections", 40),
            "allowed_updates": params.get("allowed_updates", previous.get("allowed_updates")),
        }
        return True

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> bool:
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook = None
        return True

    async def _api_getWebhookInfo(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.webhook:
            info["max_connections"] = self.webhook["max_connections"]
            if self.webhook["allowed_updates"] is not None:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        if self._last_error:
            info["last_error_date"], info["last_error_message"] = self._last_error
        return info

    async def _api_sendChatAction(self, params: dict[str, Any]) -> bool:
        if params["action"] not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self._refuse_blocked(params["chat_id"])
        return True

    async def _api_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise TelegramError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        if offset is not None:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        if not self._pending and params.get("timeout"):
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), timeout=params["timeout"])
            except TimeoutError:
                pass
        return self._pending[: params.get("limit", 100)]

    # ---- helpers -------------------------------------------------------------------------

    def _refuse_blocked(self, chat_id: int | str) -> None:
        if chat_id in self.blocked:
            raise TelegramError(403, "Forbidden: bot was blocked by the user")
        if isinstance(chat_id, str) and chat_id not in self.chats:
            raise bad_request("chat not found")

    def _gate(self, chat_id: int | str) -> None:
        """Blocked chats, then flood limits; records the send when it may go out."""
        self._refuse_blocked(chat_id)
        now = self.clock().timestamp()
        group = isinstance(chat_id, str) or chat_id < 0
        buckets = [(("bot", None), self.per_bot), (("chat", chat_id), self.per_chat)]
        if group:
            buckets.append((("group", chat_id), self.per_group))
        wait = 0.0
        for key, limit in buckets:
            if limit is None:
                continue
            times = self._sends[key]
            while times and times[0] <= now - limit.seconds:
                times.popleft()
            if len(times) >= limit.count:
                wait = max(wait, times[0] + limit.seconds - now)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise TelegramError(
                429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
            )
        for key, limit in buckets:
            if limit is not None:
                self._sends[key].append(now)

    def _chat(self, chat_id: int | str, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if isinstance(chat_id, int) and chat_id > 0:
            chat: dict[str, Any] = {"id": chat_id, "type": "private"}
            if user:
                chat["first_name"] = user["first_name"]
            return chat
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": "Shipmate agents"}

    def _message_id(self, chat_id: int | str) -> int:
        message_id = self._next_message_id[chat_id]
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _next_update_id(self) -> int:
        self._update_id += 1
        return self._update_id

    def _now(self) -> int:
        return int(self.clock().astimezone(UTC).timestamp())
