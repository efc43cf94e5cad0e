"""In-memory Binance USD-M account: one-way positions, market fills at the mark price, fees.

The response dictionaries follow the shapes of Binance's USD-M Futures REST API
documentation (sections "Exchange Information", "Account Information V3", "Position
Information V3", "New Order", "Query Order", "Account Trade List", "Kline/Candlestick
Data"), with numbers as strings exactly as Binance sends them.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any


class BinanceApiError(Exception):
    """A Binance error reply: HTTP status plus ``{"code": ..., "msg": ...}``."""

    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg


@dataclasses.dataclass
class SymbolSpec:
    """A USD-M perpetual and its exchange filters (defaults: Binance's BTCUSDT); prices in USDT."""

    symbol: str = "BTCUSDT"
    base: str = "BTC"
    quote: str = "USDT"
    tick_size: float = 0.1  # PRICE_FILTER.tickSize
    step_size: float = 0.001  # LOT_SIZE, base units (and min_qty, max_qty)
    min_qty: float = 0.001
    max_qty: float = 1000.0
    min_notional_usd: float = 100.0  # MIN_NOTIONAL.notional; reduce-only orders exempt
    price_precision: int = 2  # decimals of pricePrecision
    quantity_precision: int = 3  # decimals of quantityPrecision


@dataclasses.dataclass
class _Position:
    amt: float = 0.0
    entry_price: float = 0.0
    update_ms: int = 0


def _s(x: float, nd: int = 8) -> str:
    return f"{x:.{nd}f}"


class ExchangeEngine:
    """Account state and matching behind the loopback server; hold ``lock`` while touching it."""

    def __init__(
        self,
        specs: list[SymbolSpec],
        *,
        balance_usd: float,
        fee_bps: float,
        leverage: int,
        prices: dict[str, float],
    ):
        self.lock = threading.RLock()
        self.specs = {s.symbol: s for s in specs}
        self.wallet_usd = float(balance_usd)
        self.fee_bps = float(fee_bps)
        self.leverage = int(leverage)
        self.prices = dict(prices)
        self.positions = {s.symbol: _Position() for s in specs}
        self.orders: dict[int, dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self.klines: dict[tuple[str, str], list[list[Any]]] = {}
        self.fixed_now_ms: int | None = None
        self._next_order_id = 1_000_001
        self._next_trade_id = 5_000_001

    # --- clock -----------------------------------------------------------------------
    def now_ms(self) -> int:
        """Return the server clock, epoch ms (frozen by ``fixed_now_ms`` when set)."""
        return self.fixed_now_ms if self.fixed_now_ms is not None else int(time.time() * 1000)

    # --- read-only views -------------------------------------------------------------
    def spec(self, symbol: str | None) -> SymbolSpec:
        """Return the spec of ``symbol``."""
        if symbol not in self.specs:
            raise BinanceApiError(400, -1121, "Invalid symbol.")
        return self.specs[symbol]

    def exchange_info(self) -> dict[str, Any]:
        """Return the ``GET /fapi/v1/exchangeInfo`` reply for the listed symbols."""
        symbols = []
        for s in self.specs.values():
            symbols.append({
                "symbol": s.symbol, "pair": s.symbol, "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
                "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
                "baseAsset": s.base, "quoteAsset": s.quote, "marginAsset": s.quote,
                "pricePrecision": s.price_precision, "quantityPrecision": s.quantity_precision,
                "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
                "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
                "liquidationFee": "0.012500", "marketTakeBound": "0.05",
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764",
                     "tickSize": repr(s.tick_size)},
                    {"filterType": "LOT_SIZE", "minQty": repr(s.min_qty), "maxQty": repr(s.max_qty),
                     "stepSize": repr(s.step_size)},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": repr(s.min_qty), "maxQty": repr(s.max_qty),
                     "stepSize": repr(s.step_size)},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": repr(s.min_notional_usd)},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"},
                ],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                               "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            })
        return {
            "timezone": "UTC", "serverTime": self.now_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": symbols,
        }

    def leverage_brackets(self) -> list[dict[str, Any]]:
        return [{"symbol": s, "brackets": [{"bracket": 1, "initialLeverage": 125, "notionalCap": 50000000,
                                            "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0}]}
                for s in self.specs]

    def _upnl(self, symbol: str) -> float:
        p = self.positions[symbol]
        return p.amt * (self.prices[symbol] - p.entry_price) if p.amt else 0.0

    def _initial_margin(self) -> float:
        return sum(abs(p.amt) * self.prices[s] / self.leverage for s, p in self.positions.items())

    def position_rows(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Return ``GET /fapi/v2/positionRisk`` rows."""
        rows = []
        for sym, p in self.positions.items():
            if symbol is not None and sym != symbol:
                continue
            mark = self.prices[sym]
            notional = p.amt * mark
            rows.append({
                "symbol": sym, "positionSide": "BOTH", "positionAmt": _s(p.amt, 3),
                "entryPrice": _s(p.entry_price, 8), "breakEvenPrice": _s(p.entry_price, 8),
                "markPrice": _s(mark, 8), "unRealizedProfit": _s(self._upnl(sym)), "liquidationPrice": "0",
                "isolatedMargin": "0", "notional": _s(notional), "marginAsset": "USDT", "isolatedWallet": "0",
                "initialMargin": _s(abs(notional) / self.leverage), "maintMargin": _s(abs(notional) * 0.004),
                "positionInitialMargin": _s(abs(notional) / self.leverage), "openOrderInitialMargin": "0",
                "adl": 0, "bidNotional": "0", "askNotional": "0", "updateTime": p.update_ms,
            })
        return rows

    def account(self) -> dict[str, Any]:
        """Return the ``GET /fapi/v2/account`` reply (wallet, margins, positions)."""
        upnl = sum(self._upnl(s) for s in self.positions)
        margin_balance = self.wallet_usd + upnl
        im = self._initial_margin()
        avail = max(margin_balance - im, 0.0)
        asset = {
            "asset": "USDT", "walletBalance": _s(self.wallet_usd), "unrealizedProfit": _s(upnl),
            "marginBalance": _s(margin_balance), "maintMargin": _s(im * self.leverage * 0.004),
            "initialMargin": _s(im), "positionInitialMargin": _s(im), "openOrderInitialMargin": "0.00000000",
            "crossWalletBalance": _s(self.wallet_usd), "crossUnPnl": _s(upnl), "availableBalance": _s(avail),
            "maxWithdrawAmount": _s(avail), "updateTime": self.now_ms(),
        }
        positions = [{k: r[k] for k in ("symbol", "positionSide", "positionAmt", "unRealizedProfit",
                                        "isolatedMargin", "notional", "isolatedWallet", "initialMargin",
                                        "maintMargin", "updateTime")} for r in self.position_rows()]
        return {
            "totalInitialMargin": _s(im), "totalMaintMargin": asset["maintMargin"],
            "totalWalletBalance": _s(self.wallet_usd), "totalUnrealizedProfit": _s(upnl),
            "totalMarginBalance": _s(margin_balance), "totalPositionInitialMargin": _s(im),
            "totalOpenOrderInitialMargin": "0.00000000", "totalCrossWalletBalance": _s(self.wallet_usd),
            "totalCrossUnPnl": _s(upnl), "availableBalance": _s(avail), "maxWithdrawAmount": _s(avail),
            "assets": [asset], "positions": positions,
        }

    def balance_rows(self) -> list[dict[str, Any]]:
        """Return the ``GET /fapi/v2/balance`` reply (one USDT row)."""
        a = self.account()["assets"][0]
        return [{"accountAlias": "SgsR", "asset": "USDT", "balance": a["walletBalance"],
                 "crossWalletBalance": a["crossWalletBalance"], "crossUnPnl": a["crossUnPnl"],
                 "availableBalance": a["availableBalance"], "maxWithdrawAmount": a["maxWithdrawAmount"],
                 "marginAvailable": True, "updateTime": a["updateTime"]}]

    def klines_rows(self, symbol: str, interval: str, start_ms: int | None, end_ms: int | None,
                    limit: int) -> list[list[Any]]:
        """Return ``GET /fapi/v1/klines`` rows that opened by the server clock."""
        self.spec(symbol)
        rows = self.klines.get((symbol, interval), [])
        now = self.now_ms()
        out = [r for r in rows if r[0] <= now and (start_ms is None or r[0] >= start_ms)
               and (end_ms is None or r[0] <= end_ms)]
        return out[-limit:] if start_ms is None else out[:limit]

    # --- orders ----------------------------------------------------------------------
    def find_order(self, symbol: str, order_id: int | None, client_id: str | None) -> dict[str, Any]:
        """Return the stored order of ``symbol`` with ``order_id`` or ``client_id``."""
        for o in self.orders.values():
            if o["symbol"] == symbol and (o["orderId"] == order_id or (client_id and o["clientOrderId"] == client_id)):
                return o
        raise BinanceApiError(400, -2013, "Order does not exist.")

    def open_orders(self, symbol: str | None) -> list[dict[str, Any]]:
        """Return the resting (``NEW``) orders."""
        return [o for o in self.orders.values() if o["status"] == "NEW" and symbol in (None, o["symbol"])]

    def cancel_all(self, symbol: str) -> dict[str, Any]:
        """Cancel every resting order of ``symbol``."""
        self.spec(symbol)
        for o in self.open_orders(symbol):
            o["status"] = "CANCELED"
            o["updateTime"] = self.now_ms()
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def new_order(self, p: dict[str, str]) -> dict[str, Any]:
        """Place an order from ``POST /fapi/v1/order`` parameters (see the class docstring)."""
        spec = self.spec(p.get("symbol"))
        side = p.get("side", "")
        otype = p.get("type", "")
        if side not in ("BUY", "SELL"):
            raise BinanceApiError(400, -1117, "Invalid side.")
        if otype not in ("MARKET", "LIMIT"):
            raise BinanceApiError(400, -1116, "Invalid orderType.")
        try:
            qty = float(p.get("quantity", "nan"))
        except ValueError:
            raise BinanceApiError(400, -1100, "Illegal characters found in parameter 'quantity'.") from None
        if not qty > 0:
            raise BinanceApiError(400, -4003, "Quantity less than or equal to zero.")
        steps = qty / spec.step_size
        if abs(steps - round(steps)) > 1e-6:
            raise BinanceApiError(400, -1111, "Precision is over the maximum defined for this asset.")
        if qty < spec.min_qty - 1e-12 or qty > spec.max_qty:
            raise BinanceApiError(400, -4005, "Quantity greater than max quantity.")
        client_id = p.get("newClientOrderId") or f"loopback{self._next_order_id}"
        if any(o["clientOrderId"] == client_id for o in self.orders.values()):
            raise BinanceApiError(400, -4015, "Client order id is not valid.")
        reduce_only = p.get("reduceOnly", "false").lower() == "true"
        price = self.prices[spec.symbol]
        signed = qty if side == "BUY" else -qty
        pos = self.positions[spec.symbol]
        if reduce_only:
            if pos.amt == 0 or math.copysign(1.0, signed) == math.copysign(1.0, pos.amt):
                raise BinanceApiError(400, -2022, "ReduceOnly Order is rejected.")
            signed = math.copysign(min(qty, abs(pos.amt)), signed)
        elif abs(signed * price) < spec.min_notional_usd - 1e-9:
            raise BinanceApiError(400, -4164, f"Order's notional must be no smaller than "
                                              f"{spec.min_notional_usd:g} (unless you choose reduce only).")
        order = self._order_dict(spec.symbol, client_id, side, otype, qty, reduce_only, p)
        if otype == "MARKET":
            self._check_margin(spec.symbol, signed, price)
            # a market order takes resting prices, which lie on the tick: the ask at or above the price, the bid below
            ticks = price / spec.tick_size
            touch = (math.ceil(ticks - 1e-9) if signed > 0 else math.floor(ticks + 1e-9)) * spec.tick_size
            self._fill(order, signed, round(touch, 10))
        return order

    def _order_dict(self, symbol: str, client_id: str, side: str, otype: str, qty: float, reduce_only: bool,
                    p: dict[str, str]) -> dict[str, Any]:
        now = self.now_ms()
        order = {
            "orderId": self._next_order_id, "symbol": symbol, "status": "NEW", "clientOrderId": client_id,
            "price": p.get("price", "0"), "avgPrice": "0.00", "origQty": _s(qty, 3), "executedQty": "0.000",
            "cumQty": "0.000", "cumQuote": "0.00000", "timeInForce": p.get("timeInForce", "GTC"), "type": otype,
            "reduceOnly": reduce_only, "closePosition": False, "side": side, "positionSide": "BOTH",
            "stopPrice": "0.00", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": otype,
            "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
            "time": now, "updateTime": now,
        }
        self.orders[self._next_order_id] = order
        self._next_order_id += 1
        return order

    def _check_margin(self, symbol: str, signed: float, price: float) -> None:
        pos = self.positions[symbol]
        new_amt = pos.amt + signed
        extra_im = (abs(new_amt) - abs(pos.amt)) * price / self.leverage
        fee = abs(signed) * price * self.fee_bps / 1e4
        avail = self.wallet_usd + sum(self._upnl(s) for s in self.positions) - self._initial_margin()
        if extra_im > 0 and extra_im + fee > avail:
            raise BinanceApiError(400, -2019, "Margin is insufficient.")

    def _fill(self, order: dict[str, Any], signed: float, price: float) -> None:
        symbol = order["symbol"]
        pos = self.positions[symbol]
        qty = abs(signed)
        fee = qty * price * self.fee_bps / 1e4
        realized = 0.0
        if pos.amt == 0 or math.copysign(1.0, pos.amt) == math.copysign(1.0, signed):
            new_amt = pos.amt + signed
            pos.entry_price = (abs(pos.amt) * pos.entry_price + qty * price) / abs(new_amt)
            pos.amt = new_amt
        else:
            closed = min(qty, abs(pos.amt))
            realized = closed * (price - pos.entry_price) * math.copysign(1.0, pos.amt)
            remainder = qty - closed
            pos.amt = pos.amt + math.copysign(closed, signed)
            if abs(pos.amt) < 1e-12:
                pos.amt, pos.entry_price = 0.0, 0.0
            if remainder > 1e-12:
                pos.amt, pos.entry_price = math.copysign(remainder, signed), price
        pos.amt = round(pos.amt, 9)
        pos.update_ms = self.now_ms()
        self.wallet_usd += realized - fee
        order.update(status="FILLED", avgPrice=_s(price, 2), executedQty=_s(qty, 3), cumQty=_s(qty, 3),
                     cumQuote=_s(qty * price, 5), updateTime=pos.update_ms)
        self.trades.append({
            "buyer": order["side"] == "BUY", "commission": _s(fee), "commissionAsset": "USDT",
            "id": self._next_trade_id, "maker": False, "orderId": order["orderId"], "price": _s(price, 2),
            "qty": _s(qty, 3), "quoteQty": _s(qty * price, 5), "realizedPnl": _s(realized),
            "side": order["side"], "positionSide": "BOTH", "symbol": symbol, "time": pos.update_ms,
        })
        self._next_trade_id += 1
