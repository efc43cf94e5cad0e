"""CcxtBroker: Binance USD-M futures through ccxt, errors translated once at this boundary."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import ccxt
from loguru import logger

from quantnb.agent import Fill
from quantnb.errors import ConfigError, OperationalError
from quantnb.live._broker import Broker
from quantnb.live._types import AccountState, MarketRules, Side
from quantnb.live._venue import ENV_KEYS, credentials_from_env, make_exchange, translate_ccxt_error

__all__ = ["CcxtBroker"]

T = TypeVar("T")


class CcxtBroker(Broker):
    """Binance USD-M account (one-way position mode) through ccxt's ``binanceusdm``.

    API keys are read from the environment only (:data:`ENV_KEYS`); they live in the ccxt object
    and nowhere else, and every error message is scrubbed of them.

    References
    ----------
    Binance USD-M Futures REST: "New Order" (``newClientOrderId``, ``newOrderRespType=RESULT``,
    ``reduceOnly``), "Query Order" (``origClientOrderId``), "Cancel All Open Orders",
    "Account Trade List", "Position Information V3", "Account Information V3".
    """

    def __init__(self, symbol: str, mode: str, *, base_url: str | None = None, timeout_s: float = 10.0,
                 environ: Mapping[str, str] | None = None):
        creds = credentials_from_env(mode, environ)
        self._secrets = creds
        self._ex = make_exchange(mode, base_url=base_url, timeout_s=timeout_s, credentials=creds)
        self.mode = mode
        self._requested_symbol = symbol
        self.symbol = symbol
        self.rules = MarketRules()
        self._sent: set[str] = set()

    def __repr__(self) -> str:
        return f"CcxtBroker(symbol={self.symbol!r}, mode={self.mode!r})"

    @property
    def exchange(self) -> Any:
        """The underlying ccxt exchange (shared with :class:`CcxtKlineProvider` for REST klines)."""
        return self._ex

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ccxt.BaseError as err:
            raise translate_ccxt_error(err, what=what, exchange=self._ex, secrets=self._secrets) from None

    def connect(self) -> None:
        """Load markets, resolve the symbol and its rules, and check the keys with a balance call."""
        markets = self._call("load markets", self._ex.load_markets)
        sym = self._requested_symbol
        if sym not in markets:
            by_id = self._ex.markets_by_id.get(sym.replace("/", "").upper())
            if not by_id:
                raise ConfigError(f"symbol={sym!r} is not a Binance USD-M market; use e.g. 'BTC/USDT:USDT' "
                                  f"or 'BTCUSDT'")
            sym = by_id[0]["symbol"]
        self.symbol = sym
        m = markets[sym]
        self.rules = MarketRules(qty_step=float(m["precision"]["amount"] or 0.0),
                                 min_qty=float(m["limits"]["amount"]["min"] or 0.0),
                                 min_notional_usd=float(m["limits"]["cost"]["min"] or 0.0),
                                 tick_size=float(m["precision"]["price"] or 0.0))
        try:
            self.account()
        except OperationalError as err:
            if "AuthenticationError" in str(err):
                key_var, secret_var = ENV_KEYS[self.mode]
                raise ConfigError(f"{err}; fix {key_var} / {secret_var}") from None
            raise
        logger.info("live/broker: connected to binanceusdm ({}) {} step={} min_notional_usd={}",
                    self.mode, self.symbol, self.rules.qty_step, self.rules.min_notional_usd)

    def account(self) -> AccountState:
        """Return wallet balance, equity (margin balance) and the position, from two REST calls."""
        bal = self._call("fetch balance", self._ex.fetch_balance)
        assets = {a.get("asset"): a for a in (bal.get("info") or {}).get("assets", [])}
        usdt = assets.get("USDT", {})
        wallet = float(usdt.get("walletBalance", bal.get("USDT", {}).get("total") or 0.0))
        equity = float(usdt.get("marginBalance", bal.get("USDT", {}).get("total") or 0.0))
        qty, entry, mark = 0.0, 0.0, 0.0
        for p in self._call("fetch positions", self._ex.fetch_positions, [self.symbol]):
            if p["symbol"] == self.symbol:
                sign = -1.0 if p.get("side") == "short" else 1.0
                qty = sign * float(p.get("contracts") or 0.0)
                entry = float(p.get("entryPrice") or 0.0)
                mark = float(p.get("markPrice") or 0.0)
        return AccountState(balance_usd=wallet, equity_usd=equity, position_qty=qty, entry_price=entry,
                            mark_price=mark)

    def positions(self) -> dict[str, float]:
        """Return every open position of the account, ccxt symbol to signed quantity."""
        out: dict[str, float] = {}
        for p in self._call("fetch positions", self._ex.fetch_positions):
            qty = float(p.get("contracts") or 0.0)
            if qty:
                out[p["symbol"]] = -qty if p.get("side") == "short" else qty
        return out

    def market_order(self, side: Side, qty: float, *, reduce_only: bool = False,
                     client_order_id: str | None = None) -> Fill:
        """Send a market order (see :meth:`Broker.market_order`); idempotent per ``client_order_id``."""
        return self._market(self.symbol, side, qty, reduce_only, client_order_id)

    def _market(self, symbol: str, side: Side, qty: float, reduce_only: bool, cid: str | None) -> Fill:
        cid = cid or f"qnb-{uuid.uuid4().hex[:24]}"
        if cid in self._sent:
            order = self._lookup(symbol, cid)
            if order is not None:
                logger.warning("live/broker: order {} was already taken by the venue; not resending", cid)
                return self._to_fill(symbol, order, reduce_only)
        self._sent.add(cid)
        params: dict[str, Any] = {"newClientOrderId": cid, "newOrderRespType": "RESULT"}
        if reduce_only:
            params["reduceOnly"] = True
        qty = self.rules.round_qty(qty) if symbol == self.symbol else qty  # MarketRules: the one rounding rule
        amount = float(self._ex.amount_to_precision(symbol, qty))
        order = self._call(f"create market {side} {amount} {symbol}", self._ex.create_order, symbol, "market",
                           side, amount, None, params)
        return self._to_fill(symbol, order, reduce_only)

    def _lookup(self, symbol: str, cid: str) -> dict[str, Any] | None:
        try:
            return self._ex.fetch_order(None, symbol, {"origClientOrderId": cid})
        except ccxt.OrderNotFound:
            return None
        except ccxt.BaseError as err:
            raise translate_ccxt_error(err, what=f"query order {cid}", exchange=self._ex,
                                       secrets=self._secrets) from None

    def _to_fill(self, symbol: str, order: dict[str, Any], reduce_only: bool) -> Fill:
        filled = float(order.get("filled") or 0.0)
        if order.get("status") != "closed" or filled <= 0:
            order = self._call("query order", self._ex.fetch_order, order["id"], symbol)
            filled = float(order.get("filled") or 0.0)
        if filled <= 0:
            raise OperationalError(f"binanceusdm market order {order.get('clientOrderId')} on {symbol} not filled "
                                   f"(status {order.get('info', {}).get('status')}); check the account")
        trades = self._call("fetch order trades", self._ex.fetch_my_trades, symbol, None, None,
                            {"orderId": order["id"]})
        fee = sum(abs(float((t.get("fee") or {}).get("cost") or 0.0)) for t in trades)
        return Fill(qty=filled if order["side"] == "buy" else -filled,
                    price_usd=float(order.get("average") or order.get("price") or 0.0), fee_usd=fee,
                    order_id=str(order["id"]), client_order_id=str(order.get("clientOrderId")),
                    status=str(order.get("info", {}).get("status", order.get("status"))), reduce_only=reduce_only)

    def cancel_all(self) -> int:
        """Cancel every open order on :attr:`symbol`; return how many were open."""
        n = len(self._call("fetch open orders", self._ex.fetch_open_orders, self.symbol))
        self._call("cancel all orders", self._ex.cancel_all_orders, self.symbol)
        return n

    def close_position(self, symbol: str, qty: float, *, client_order_id: str | None = None) -> Fill:
        """Flatten ``qty`` (signed, base units) of ``symbol`` with a reduce-only market order."""
        side: Side = "sell" if qty > 0 else "buy"
        return self._market(symbol, side, abs(qty), True, client_order_id)

    def open_orders(self) -> list[str]:
        """Return the client order ids of the orders open on :attr:`symbol`."""
        orders = self._call("fetch open orders", self._ex.fetch_open_orders, self.symbol)
        return [str(o.get("clientOrderId") or o.get("id")) for o in orders]

    def order_status(self, client_order_id: str) -> tuple[str, Fill | None]:
        """Look ``client_order_id`` up on the venue (``GET /fapi/v1/order?origClientOrderId=``)."""
        order = self._lookup(self.symbol, client_order_id)
        if order is None:
            return "missing", None
        filled = float(order.get("filled") or 0.0)
        if order.get("status") == "closed" and filled > 0:
            return "filled", self._to_fill(self.symbol, order, bool(order.get("reduceOnly")))
        if order.get("status") == "open":
            return "open", None
        if filled > 0:
            return "filled", self._to_fill(self.symbol, order, bool(order.get("reduceOnly")))
        return "missing", None

    def close(self) -> None:
        """Drop the HTTP session."""
        session = getattr(self._ex, "session", None)
        if session is not None:
            session.close()
