"""A serial reference model of sluice's decisions: a port of the Rust model in
``tests/support/model.rs`` (written for clarity, not speed), plus a policy description that
writes itself as policy text.

The model keeps, per key and rule, a deque of every logged timestamp and counts the ones in
the window; per key and lockout, a deque of failures, the lock's end and its level. Its
eviction is global: "expired first, then least recently active, never an active lockout". The
engine judges that within a key's 16-position neighbourhood, so the two agree when capacity is
at most 16 and times are distinct and non-decreasing (no LRU ties).

One addition to the Rust model: ``full`` counts the requests for which no slot could be had
(the engine's ``Stats.full``), at the two places where the model answers ``Full``.
"""

from collections import deque
from dataclasses import dataclass, field
from typing import List, Optional, Union

from sluice import Decision

GLOBAL = "global"


def ceil_secs(ms):
    return 0 if ms <= 0 else (ms + 999) // 1000


# ---- policies ---------------------------------------------------------------------------------


def format_ms(ms):
    return "{}ms".format(ms)


@dataclass(frozen=True)
class WindowRule:
    name: str
    limit: int
    window_ms: int
    strict: bool = False
    dry_run: bool = False

    def text(self):
        flags = (" strict" if self.strict else "") + (" dry-run" if self.dry_run else "")
        return "{} {}/{}{}".format(self.name, self.limit, format_ms(self.window_ms), flags)


@dataclass(frozen=True)
class LockoutRule:
    name: str
    failures: int
    window_ms: int
    ban_ms: int
    max_ban_ms: Optional[int] = None

    def text(self):
        upto = "" if self.max_ban_ms is None else ".." + format_ms(self.max_ban_ms)
        return "{} lockout {}/{} for {}{}".format(
            self.name, self.failures, format_ms(self.window_ms), format_ms(self.ban_ms), upto
        )


Rule = Union[WindowRule, LockoutRule]


@dataclass
class Policy:
    rules: List[Rule]
    capacity: int = 65536
    when_full: str = "deny"
    categories: List[str] = field(init=False)

    def __post_init__(self):
        # `global` first (id 0), then the others in order of first appearance.
        self.categories = [GLOBAL]
        for r in self.rules:
            if r.name not in self.categories:
                self.categories.append(r.name)

    def text(self):
        lines = [r.text() for r in self.rules]
        lines.append("capacity {}".format(self.capacity))
        lines.append("when-full {}".format(self.when_full))
        return "\n".join(lines)

    def category_id(self, name):
        return self.categories.index(name)


# ---- the model --------------------------------------------------------------------------------


class KeyState:
    __slots__ = ("logs", "failures", "lock", "last_active")

    def __init__(self, n):
        self.logs = [deque() for _ in range(n)]  # per rule index (window rules only used)
        self.failures = [deque() for _ in range(n)]  # per rule index (lockouts only used)
        self.lock = [None] * n  # per rule index: (until, level)
        self.last_active = 0


def _decision(allowed, status, limit, remaining, reset, reset_after, retry_after, rule, window_ms):
    return Decision(
        allowed=allowed,
        status=status,
        limit=limit,
        remaining=remaining,
        reset=reset,
        reset_after=reset_after,
        retry_after=retry_after,
        window_ms=window_ms,
        rule=rule,
    )


def _replace(d, **changes):
    fields = d.as_dict()
    fields.update(changes)
    return Decision(**fields)


def no_rule(t):
    return _decision(True, "passed", 0, 0, ceil_secs(t), 0, 0, None, 0)


class Model:
    def __init__(self, policy):
        self.policy = policy
        n = len(policy.rules)
        self.keys = {}
        self.passed = [0] * n
        self.limited = [0] * n
        self.dry = [0] * n
        self.locked = [0] * n
        self.lockouts = [0] * n
        self.evictions = 0
        self.reclaimed = 0
        self.full_count = 0

    def fresh(self):
        return KeyState(len(self.policy.rules))

    def rules_of(self, c):
        """Window rules that apply to category ``c``: the global ones and c's own, in policy
        order (which is what "the first rule" of a tie means)."""
        name = self.policy.categories[c]
        rules = self.policy.rules
        v = [i for i, r in enumerate(rules) if isinstance(r, WindowRule) and r.name == GLOBAL]
        if c != 0:
            v.extend(i for i, r in enumerate(rules) if isinstance(r, WindowRule) and r.name == name)
        return sorted(v)

    def lockout_of(self, c):
        name = self.policy.categories[c]
        for i, r in enumerate(self.policy.rules):
            if isinstance(r, LockoutRule) and r.name == name:
                return i
        return None

    def window(self, r):
        w = self.policy.rules[r]
        return w.limit, w.window_ms, w.strict, w.dry_run

    def lockout(self, r):
        lo = self.policy.rules[r]
        return lo.failures, lo.window_ms, lo.ban_ms, lo.max_ban_ms

    @staticmethod
    def is_locked(k, t):
        return any(lock is not None and lock[0] > t for lock in k.lock)

    def is_expired(self, k, t):
        for r, rule in enumerate(self.policy.rules):
            if isinstance(rule, WindowRule):
                if not (not k.logs[r] or k.logs[r][-1] <= t - rule.window_ms):
                    return False
            else:
                forget = rule.max_ban_ms if rule.max_ban_ms is not None else rule.ban_ms
                if not (not k.failures[r] or k.failures[r][-1] <= t - rule.window_ms):
                    return False
                if not (k.lock[r] is None or k.lock[r][0] + forget <= t):
                    return False
        return True

    def install(self, key, t):
        """Make sure ``key`` has state, evicting if the table is full. False: no room."""
        if key in self.keys:
            return True
        if len(self.keys) >= self.policy.capacity:
            candidates = [
                (not self.is_expired(k, t), k.last_active, name)
                for name, k in self.keys.items()
                if not self.is_locked(k, t)
            ]
            if not candidates:
                return False
            unexpired, _, name = min(candidates)
            if unexpired:
                self.evictions += 1
            else:
                self.reclaimed += 1
            del self.keys[name]
        fresh = self.fresh()
        fresh.last_active = t
        self.keys[key] = fresh
        return True

    def full(self, t):
        allowed = self.policy.when_full == "allow"
        return _decision(allowed, "full", 0, 0, ceil_secs(t), 0, 0 if allowed else 1, None, 0)

    def locked_decision(self, r, until, t):
        f, d, _, _ = self.lockout(r)
        rest = max(ceil_secs(until - t), 1)
        return _decision(False, "locked", f, 0, ceil_secs(until), rest, rest, r, d)

    @staticmethod
    def in_window(q, t, w):
        v = [ts for ts in q if ts > t - w]
        return len(v), (v[0] if v else None)

    @staticmethod
    def admitted(r, limit, w, count, oldest, t):
        return _decision(
            True,
            "passed",
            limit,
            max(limit - count, 0),
            ceil_secs(oldest + w),
            ceil_secs(oldest + w - t),
            0,
            r,
            w,
        )

    @staticmethod
    def refused(r, limit, w, q, t):
        # The N-th most recent logged request: when it leaves the window, this rule admits
        # again and `remaining` grows (strict rules may log more than N in a window).
        nth = q[len(q) - limit]
        reset_ms = nth + w
        return _decision(
            False,
            "limited",
            limit,
            0,
            ceil_secs(reset_ms),
            ceil_secs(reset_ms - t),
            max(ceil_secs(nth + w - t), 1),
            r,
            w,
        )

    def decide(self, key, c, t, record):
        """``check`` (record=True) or ``peek`` (record=False) of ``key`` in category ``c``."""
        if record:
            if not self.install(key, t):
                self.full_count += 1
                return self.full(t)
            self.keys[key].last_active = t
        rules = self.rules_of(c)
        k = self.keys.get(key)
        if k is None:
            # peek of an unknown key: every log is empty
            best = None
            for r in rules:
                n, w, _, _ = self.window(r)
                d = Model.admitted(r, n, w, 1, t, t)
                if best is None or not best.remaining <= d.remaining:
                    best = d
            return best if best is not None else no_rule(t)
        # A peek never changes k below (every mutation is under `record`), so the model
        # works on the key's state in place instead of on a clone.
        lr = self.lockout_of(c)
        if lr is not None:
            lock = k.lock[lr]
            if lock is not None and lock[0] > t:
                if record:
                    self.locked[lr] += 1
                return self.locked_decision(lr, lock[0], t)
        admits = []
        for r in rules:
            n, w, _, _ = self.window(r)
            admits.append(Model.in_window(k.logs[r], t, w)[0] < n)
        refused = any(not a and not self.window(r)[3] for r, a in zip(rules, admits))
        if refused:
            best = None
            for r, a in zip(rules, admits):
                n, w, strict, dry = self.window(r)
                if a:
                    continue
                logs = k.logs[r]
                if strict:
                    # A check logs the refusal; a peek reports as if it had.
                    if record:
                        k.logs[r].append(t)
                    else:
                        logs = list(logs) + [t]
                if dry:
                    continue
                if record:
                    self.limited[r] += 1
                d = Model.refused(r, n, w, logs, t)
                if best is None or d.retry_after > best.retry_after:
                    best = d
            return best
        # Admitted (or would be).
        best = None
        dry = None
        for r, a in zip(rules, admits):
            n, w, strict, _ = self.window(r)
            if not a:
                logs = k.logs[r]
                if strict:
                    if record:
                        k.logs[r].append(t)
                    else:
                        logs = list(logs) + [t]
                if record:
                    self.dry[r] += 1
                if dry is None:
                    d = Model.refused(r, n, w, logs, t)
                    dry = _replace(d, allowed=True, status="dry-run-limited", retry_after=0)
                continue
            if record:
                k.logs[r].append(t)
                self.passed[r] += 1
                count, oldest = Model.in_window(k.logs[r], t, w)
                d = Model.admitted(r, n, w, count, oldest, t)
            else:
                count, oldest = Model.in_window(k.logs[r], t, w)
                d = Model.admitted(r, n, w, count + 1, t if oldest is None else min(oldest, t), t)
            if best is None or d.remaining < best.remaining:
                best = d
        if dry is not None:
            return dry
        return best if best is not None else no_rule(t)

    def check(self, key, c, t):
        return self.decide(key, c, t, True)

    def peek(self, key, c, t):
        return self.decide(key, c, t, False)

    def failure(self, key, c, t):
        lr = self.lockout_of(c)
        assert lr is not None, "failure on a category without a lockout"
        f, d, ban, mx = self.lockout(lr)
        if not self.install(key, t):
            self.full_count += 1
            return self.full(t)
        k = self.keys[key]
        k.last_active = t
        lock = k.lock[lr]
        if lock is not None and lock[0] > t:
            return self.locked_decision(lr, lock[0], t)
        k.failures[lr].append(t)
        count, oldest = Model.in_window(k.failures[lr], t, d)
        if count < f:
            return Model.admitted(lr, f, d, count, oldest, t)
        forget = mx if mx is not None else ban
        if lock is not None and t < lock[0] + forget:
            level = lock[1]
        else:
            level = 0
        this_ban = ban if mx is None else min(ban * (1 << min(level, 40)), mx)
        k.lock[lr] = (t + this_ban, level + 1)
        k.failures[lr].clear()
        self.lockouts[lr] += 1
        return self.locked_decision(lr, t + this_ban, t)

    def success(self, key, c):
        lr = self.lockout_of(c)
        assert lr is not None, "success on a category without a lockout"
        k = self.keys.get(key)
        if k is not None:
            k.failures[lr].clear()

    def reset(self, key, c):
        rules = self.rules_of(c)
        lr = self.lockout_of(c)
        k = self.keys.get(key)
        if k is not None:
            for r in rules:
                k.logs[r].clear()
            if lr is not None:
                k.failures[lr].clear()
                k.lock[lr] = None
