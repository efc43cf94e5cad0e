"""A loopback Binance USD-M Futures REST server for tests and offline demos.

:class:`BinanceLoopbackServer` listens on ``127.0.0.1`` (ephemeral port), speaks the
endpoints ccxt 4.5's ``binanceusdm`` calls for markets, time, account, positions, orders
and klines, with Binance's response shapes, and fills market orders at the mark price it
is given. Faults (HTTP 429/418 with ``Retry-After``, 5xx, slow answers, dropped
connections) are injected per endpoint with :meth:`BinanceLoopbackServer.inject_fault`.
``quantnb.live.make_exchange(mode, base_url=server.base_url)`` points a ccxt exchange at it.

References
----------
Binance USD-M Futures REST API documentation: "General Info" (HTTP return codes,
``Retry-After``, SIGNED endpoint security), "Exchange Information", "Account Information
V3", "Futures Account Balance V3", "Position Information V3", "New Order", "Query Order",
"Cancel All Open Orders", "Current All Open Orders", "Account Trade List",
"Kline/Candlestick Data", "Notional and Leverage Brackets".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from quantnb.agent import DEFAULT_FEE_BPS
from quantnb.testing._binance_engine import BinanceApiError, ExchangeEngine, SymbolSpec
from quantnb.testing._faults import ERROR_BODIES, Fault, FaultKind, FaultPlan

__all__ = ["BinanceLoopbackServer", "SymbolSpec", "Fault"]

_PUBLIC = {"/fapi/v1/ping", "/fapi/v1/time", "/fapi/v1/exchangeInfo", "/fapi/v1/klines"}


class BinanceLoopbackServer:
    """Threaded HTTP server imitating Binance USD-M Futures on ``127.0.0.1``.

    Parameters
    ----------
    symbols : sequence of SymbolSpec, optional
        Tradable perpetuals; default one ``BTCUSDT`` with Binance's real filters
        (tick 0.1, step 0.001, minimum notional 100 USDT).
    prices : dict of str to float, optional
        Initial mark price per symbol, USDT; default 50,000 for each.
    balance_usd : float
        Initial USDT wallet balance.
    fee_bps : float
        Commission on every market fill (a taker fee), basis points of notional; default
        :data:`quantnb.agent._costs.DEFAULT_FEE_BPS`, Binance's regular USD-M taker rate.
    leverage : int
        Leverage used for initial-margin checks (error -2019 "Margin is insufficient.").
    api_key, api_secret : str, optional
        When given, private endpoints require this ``X-MBX-APIKEY`` and a valid HMAC-SHA256
        ``signature``; when None, any key and any signature are accepted.
    """

    def __init__(
        self,
        *,
        symbols: Sequence[SymbolSpec] | None = None,
        prices: dict[str, float] | None = None,
        balance_usd: float = 10_000.0,
        fee_bps: float = DEFAULT_FEE_BPS,
        leverage: int = 20,
        api_key: str | None = None,
        api_secret: str | None = None,
    ):
        specs = list(symbols) if symbols else [SymbolSpec()]
        prices = prices or {s.symbol: 50_000.0 for s in specs}
        # the account and matching state (positions, orders, trades), guarded by engine.lock
        self.engine = ExchangeEngine(specs, balance_usd=balance_usd, fee_bps=fee_bps,
                                     leverage=leverage, prices=prices)
        self.faults = FaultPlan()
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, params), signature removed
        self._api_key, self._api_secret = api_key, api_secret
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> BinanceLoopbackServer:
        """Start serving on an ephemeral port of ``127.0.0.1``; return self."""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="binance-loopback",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wake any request held by a ``timeout`` fault."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> BinanceLoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, the root to give ``make_exchange(..., base_url=...)``.

        Raises
        ------
        RuntimeError
            If the server was not started.
        """
        if self._httpd is None:
            raise RuntimeError("server not started: call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # --- market and account control --------------------------------------------------
    def set_price(self, symbol: str, price: float) -> None:
        """Set the mark/last price, USDT, at which market orders on ``symbol`` fill.

        Parameters
        ----------
        symbol : str
            A listed symbol.
        price : float
            USDT per unit.
        """
        with self.engine.lock:
            self.engine.prices[symbol] = float(price)

    def set_now_ms(self, now_ms: int | None) -> None:
        """Freeze the server clock at ``now_ms`` (epoch ms; None = wall clock).

        Klines opening after this instant are not served, as on the real venue.

        Parameters
        ----------
        now_ms : int or None
            Epoch milliseconds, or None for the wall clock.
        """
        with self.engine.lock:
            self.engine.fixed_now_ms = now_ms

    def set_klines(self, symbol: str, interval: str, bars: Sequence[Sequence[float]], interval_ms: int) -> None:
        """Serve ``bars`` from ``GET /fapi/v1/klines``.

        Parameters
        ----------
        symbol, interval : str
            Exchange id (``BTCUSDT``) and Binance interval (``1m``).
        bars : sequence of (open_time_ms, open, high, low, close, volume)
            Candles in ascending open time.
        interval_ms : int
            Candle length in milliseconds (close time = open time + interval_ms - 1).
        """
        rows = []
        for t, o, h, lo, c, v in bars:
            t = int(t)
            rows.append([t, f"{o:.2f}", f"{h:.2f}", f"{lo:.2f}", f"{c:.2f}", f"{v:.3f}", t + interval_ms - 1,
                         f"{v * c:.4f}", 100, f"{v / 2:.3f}", f"{v * c / 2:.4f}", "0"])
        with self.engine.lock:
            self.engine.klines[(symbol, interval)] = rows

    def position_amt(self, symbol: str = "BTCUSDT") -> float:
        """Return the signed position of ``symbol``, base units (> 0 long, < 0 short, 0 flat).

        Parameters
        ----------
        symbol : str, default "BTCUSDT"
            A listed symbol.
        """
        with self.engine.lock:
            return self.engine.positions[symbol].amt

    @property
    def wallet_usd(self) -> float:
        """USDT wallet balance (realized PnL and fees included, unrealized PnL excluded)."""
        with self.engine.lock:
            return self.engine.wallet_usd

    def inject_fault(
        self,
        kind: FaultKind,
        path: str | None = None,
        *,
        method: str | None = None,
        count: int = 1,
        status: int = 503,
        retry_after_s: float | None = None,
        delay_s: float = 5.0,
        after_processing: bool = False,
    ) -> Fault:
        """Make the next ``count`` requests to ``path`` (None: every path) fail; return the plan entry.

        Parameters
        ----------
        kind, path, method, count, status, retry_after_s, delay_s, after_processing
            The :class:`Fault` fields (its docstring says what each does); ``count`` drops as
            requests consume the fault.
        """
        fault = Fault(kind=kind, path=path, method=method, count=count, status=status,
                      retry_after_s=retry_after_s, delay_s=delay_s, after_processing=after_processing)
        self.faults.add(fault)
        return fault

    # --- request handling (called from handler threads) ------------------------------
    def _route(self, method: str, path: str, params: dict[str, str]) -> Any:
        e = self.engine
        sym = params.get("symbol")
        with e.lock:
            if path == "/fapi/v1/ping":
                return {}
            if path == "/fapi/v1/time":
                return {"serverTime": e.now_ms()}
            if path == "/fapi/v1/exchangeInfo":
                return e.exchange_info()
            if path == "/fapi/v1/klines":
                return e.klines_rows(sym or "", params.get("interval", ""), _int(params.get("startTime")),
                                     _int(params.get("endTime")), min(int(params.get("limit", 500)), 1500))
            if path == "/fapi/v1/leverageBracket":
                return e.leverage_brackets()
            if path in ("/fapi/v2/account", "/fapi/v3/account"):
                return e.account()
            if path in ("/fapi/v2/balance", "/fapi/v3/balance"):
                return e.balance_rows()
            if path in ("/fapi/v2/positionRisk", "/fapi/v3/positionRisk"):
                return e.position_rows(sym)
            if path == "/fapi/v1/openOrders":
                return e.open_orders(sym)
            if path == "/fapi/v1/order" and method == "POST":
                return e.new_order(params)
            if path == "/fapi/v1/order" and method == "GET":
                return e.find_order(sym or "", _int(params.get("orderId")), params.get("origClientOrderId"))
            if path == "/fapi/v1/allOpenOrders" and method == "DELETE":
                return e.cancel_all(sym or "")
            if path == "/fapi/v1/userTrades":
                oid = _int(params.get("orderId"))
                return [t for t in e.trades if t["symbol"] == sym and oid in (None, t["orderId"])]
        raise BinanceApiError(404, -5000, f"Path {path}, Method {method} is invalid")

    def _authenticate(self, headers: Any, raw_query: str, body: str) -> None:
        key = headers.get("X-MBX-APIKEY")
        if not key or (self._api_key is not None and key != self._api_key):
            raise BinanceApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if self._api_secret is None:
            return
        payload = raw_query or body
        head, sep, signature = payload.rpartition("&signature=")
        expected = hmac.new(self._api_secret.encode(), head.encode(), hashlib.sha256).hexdigest()
        if not sep or not hmac.compare_digest(signature, expected):
            raise BinanceApiError(400, -1022, "Signature for this request is not valid.")


def _int(x: str | None) -> int | None:
    return None if x is None else int(x)


def _make_handler(server: BinanceLoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            params = dict(parse_qsl(parts.query)) | dict(parse_qsl(body))
            params.pop("signature", None)
            server.requests.append((method, parts.path, params))
            fault = server.faults.take(method, parts.path)
            if fault is not None and not fault.after_processing and self._strike(fault):
                return
            try:
                if parts.path not in _PUBLIC:
                    server._authenticate(self.headers, parts.query, body)
                status, payload = 200, server._route(method, parts.path, params)
            except BinanceApiError as err:
                status, payload = err.status, {"code": err.code, "msg": err.msg}
            if fault is not None and fault.after_processing and self._strike(fault):
                return
            self._reply(status, payload)

        def _strike(self, fault: Fault) -> bool:
            """Apply the fault; return True when no normal reply must follow."""
            if fault.kind == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return True
            if fault.kind == "timeout":
                server._stop.wait(fault.delay_s)
                return False
            code, msg = ERROR_BODIES.get(fault.status, (-1000, "An unknown error occurred while processing."))
            headers = {}
            if fault.retry_after_s is not None:
                headers["Retry-After"] = f"{fault.retry_after_s:g}"
            self._reply(fault.status, {"code": code, "msg": msg.format(until=server.engine.now_ms() + 60_000)},
                        headers)
            return True

        def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout); the venue's side is done

    return Handler
