"""[guards]: the safety limits every decision passes (docs/guards.md): dry run,
approval, concurrency, the pace of Nova writes, cooldowns, circuit breakers,
loops and budgets."""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot.settings.kinds import Group, seconds


def _budgets() -> list[cfg.Opt]:
    """The four budgets, each with the window over which it counts."""
    opts: list[cfg.Opt] = []
    for name, where in (
        ("budget_global", "in all"),
        ("budget_per_project", "in one project"),
        ("budget_per_host", "on one compute host"),
        ("budget_per_zone", "in one availability zone"),
    ):
        opts.append(
            cfg.IntOpt(
                name,
                default=0,
                min=0,
                help=f"Most operations, of all policies together, {where} within "
                f"{name}_window; more is refused. 0 disables it.",
            )
        )
        opts.append(seconds(f"{name}_window", 3600, f"Seconds over which {name} counts."))
    return opts


def guards() -> Group:
    """Every guard's limits; 0 disables the ones that say so."""
    return cfg.OptGroup("guards", title="Safety limits"), [
        cfg.BoolOpt(
            "dry_run",
            default=False,
            help="Global dry run: matched operations are journaled and logged but no "
            "Nova write call is made.",
        ),
        cfg.BoolOpt(
            "require_approval",
            default=False,
            help="Every decision that would act on Nova awaits an operator's approval "
            "first, as under a policy's 'mode: approve': it is journaled in phase "
            "awaiting_approval and announced, and runs only when an operation.approve "
            "request names it (docs/requests.md).",
        ),
        seconds(
            "approval_timeout",
            3600,
            "Seconds an operation awaits approval; without an answer by then it ends "
            "'expired' and never runs.",
        ),
        cfg.IntOpt(
            "max_concurrent_operations",
            default=10,
            min=1,
            help="Most operations unfinished at the same time, counted in the journal "
            "(waiting ones included, and those of other daemons sharing it); a decision "
            "beyond it is refused with the guard 'concurrency'. How many run a step at "
            "the same moment is [cloud] workers.",
        ),
        cfg.FloatOpt(
            "nova_write_rate",
            default=2.0,
            min=0.01,
            help="Maximum rate of Nova write calls (resize, confirm, revert, rescue, "
            "unrescue, lock, unlock, quota updates: every call but a read), in calls per "
            "second, across all operations. A write waits for its turn, at most "
            "[cloud] api_timeout seconds, then is retried like any temporary failure. "
            "Reads are not limited.",
        ),
        cfg.IntOpt(
            "nova_write_burst",
            default=3,
            min=1,
            help="Nova write calls allowed at once after a quiet spell, before "
            "nova_write_rate paces them. 1: no burst.",
        ),
        seconds(
            "default_cooldown",
            1800,
            "Seconds during which a server is not operated on again after an "
            "operation, unless its policy sets its own cooldown. 0 disables it.",
            minimum=0,
        ),
        cfg.IntOpt(
            "breaker_failures",
            default=5,
            min=0,
            help="Failed operations (outcome failed, timed_out or reverted) of all "
            "policies within breaker_window that open the global circuit breaker, which "
            "then refuses every decision. 0 disables it.",
        ),
        cfg.IntOpt(
            "policy_breaker_failures",
            default=3,
            min=0,
            help="Failed operations of one policy within breaker_window that open that "
            "policy's circuit breaker, which then refuses the policy's decisions. A "
            "policy's limits.breaker overrides it. 0 disables it.",
        ),
        seconds(
            "breaker_window",
            600,
            "Seconds over which failures are counted, for the global breaker and, unless "
            "a policy sets its own, for each policy's.",
        ),
        seconds(
            "breaker_half_open_after",
            1800,
            "Seconds after which an open breaker lets one trial operation through; "
            "its success closes the breaker again, its failure opens it again.",
        ),
        cfg.IntOpt(
            "loop_max_per_server",
            default=5,
            min=0,
            help="Most operations on one server, by any policy, within loop_window; "
            "more is refused as a loop and logged as an error. 0 disables it.",
        ),
        seconds("loop_window", 3600, "Seconds over which loop_max_per_server counts."),
        *_budgets(),
    ]
