#!/usr/bin/env python3
"""Generate a large manifest repository for benchmarks.

usage: gen_repo.py DIR INTEGRATIONS RULES
       gen_repo.py --mixed DIR INTEGRATIONS RULES

Half the integrations are Freshdesk (rule triggers), half Slack (rule actions). Every rule has
conditions and a templated action, so validate exercises schemas, references, conditions and
template checks at scale.

--mixed (benches/console.sh, with `gen-state world`): the integrations of every platform in the
mix of benches/gen_state.rs (Freshdesk, Zendesk and Slack 25 % each, Trello and Notion 10 %,
Google Sheets 5 %), plus the built-in `alerts`, each with its webhook and its endpoint on an
unreachable loopback port (http://127.0.0.1:9, allowed by the host policy console.sh writes),
so a daemon started on it never reaches a real platform. Rule r triggers on integration
r % INTEGRATIONS (a platform's events in turn: WORLD_EVENTS, the events `gen-state world`
delivers) with a condition that holds on about a third of the deliveries
(`payload.supportopsd_bench_bucket`, 0-99, which the generator sets) plus, every fifth rule, one
on the event's own fields; its actions go to the integrations of other platforms (one or two).
Every secret is an `env` reference: console.sh sets them. Events are meant to be delivered by
`gen-state world`, which reads this repository and matches each delivery against its rules.
"""
import os
import sys

# The events `gen-state world` delivers per platform (benches/gen_state.rs, WORLD_EVENTS: each
# with the fixture it copies): keep the two lists the same.
WORLD_EVENTS = {
    "freshdesk": ["ticket_created", "ticket_updated", "ticket_resolved", "note_created"],
    "zendesk": ["ticket.created", "ticket.updated", "ticket.solved", "comment.created"],
    "slack": ["app_mention", "message", "reaction_added"],
    "trello": ["updateCard", "commentCard", "createCard"],
    "notion": ["page.created", "page.properties_updated", "comment.created"],
    "google_sheets": ["row_added"],
}

# (platform, id prefix, share of the integrations in percent), as in gen_state.rs's mix.
MIX = [
    ("freshdesk", "freshdesk", 25),
    ("zendesk", "zendesk", 25),
    ("slack", "slack", 25),
    ("trello", "trello", 10),
    ("notion", "notion", 10),
    ("google_sheets", "sheets", 5),
]

# The unreachable endpoint every integration names (port 9, discard: nothing listens).
ENDPOINT = "http://127.0.0.1:9"


def integration_toml(platform: str, iid: str, i: int) -> str:
    head = f'id = "{iid}"\nplatform = "{platform}"\nname = "{platform.replace("_", " ").title()} {i}"\n'
    end = f'\n[endpoint]\nbase_url = "{ENDPOINT}"\n'
    events = ", ".join(f'"{e}"' for e in WORLD_EVENTS[platform])
    if platform == "freshdesk":
        return head + (
            f'\n[credentials]\ndomain = "acme{i}.freshdesk.com"\napi_key = {{ env = "FD_KEY" }}\n'
            f'\n[config]\nauto_assign = true\n'
            f'\n[webhook]\nevents = [{events}]\nsecret = {{ env = "FD_HOOK" }}\n'
        ) + end
    if platform == "zendesk":
        return head + (
            f'\n[credentials]\nsubdomain = "acme{i}"\nemail = "automation@acme.example"\n'
            f'api_token = {{ env = "ZD_TOKEN" }}\n'
            f'\n[config]\nticket_events_via = "trigger"\n'
            f'\n[webhook]\nevents = [{events}]\n'
        ) + end
    if platform == "slack":
        return head + (
            f'\n[credentials]\nbot_token = {{ env = "SLACK_BOT" }}\n'
            f'signing_secret = {{ env = "SLACK_SIGNING" }}\n'
            f'\n[config]\ndefault_channel = "#support-{i % 40}"\n'
            f'\n[webhook]\nevents = [{events}]\n'
        ) + end
    if platform == "trello":
        return head + (
            f'\n[credentials]\napi_key = "a1b2c3d4e5f60718293a4b5c6d7e8f90"\n'
            f'token = {{ env = "TRELLO_TOKEN" }}\napp_secret = {{ env = "TRELLO_SECRET" }}\n'
            f'\n[config]\nboards = ["5f1a2b3c4d5e6f7a8b9c{i:04x}"]\n'
            f'default_list = "5f1a2b3c4d5e6f7a8b9d{i:04x}"\n'
            f'\n[webhook]\nevents = [{events}]\n'
        ) + end
    if platform == "notion":
        return head + (
            f'\n[credentials]\ntoken = {{ env = "NOTION_TOKEN" }}\n'
            f'\n[config]\nnotion_version = "2025-09-03"\n'
            f'default_parent_page = "1f0e2d3c4b5a69788796a5b4c3d2{i:04x}"\n'
            f'\n[webhook]\nevents = [{events}]\n'
        ) + end
    return head + (
        f'\n[credentials]\nservice_account_key = {{ env = "GS_KEY" }}\n'
        f'spreadsheet_id = "1qZx8vB3nK0pL7mR2sT5uW9yA4cD6eF8gH0jK2lM{i:04d}"\n'
        f'\n[config]\nsheet = "Escalations log"\nheader_row = 1\npoll_interval_seconds = 3600\n'
        f'push_notifications = false\n'
        f'\n[webhook]\nevents = [{events}]\n'
    ) + end


# An action on a platform, templated only with what every event has (`event.*`), so any
# trigger may use it.
def action_toml(platform: str, target: str, r: int) -> str:
    what = "{{ event.platform }} {{ event.name }} {{ event.id }} on {{ event.integration }}"
    head = f'\n[[actions]]\nintegration = "{target}"\n'
    if platform == "slack":
        return head + (
            f'action = "send_message"\n[actions.parameters]\nchannel = "#queue-{r % 50}"\n'
            f'message = "{what} (rule {r})"\n'
        )
    if platform == "zendesk":
        return head + (
            f'action = "create_ticket"\n[actions.parameters]\nsubject = "Follow-up: {what}"\n'
            f'comment = "Opened by rule {r}."\npriority = "high"\ntags = ["from-rule-{r % 20}"]\n'
        )
    if platform == "freshdesk":
        return head + (
            f'action = "create_ticket"\n[actions.parameters]\nsubject = "Follow-up: {what}"\n'
            f'description = "<p>Opened by rule {r}.</p>"\nemail = "ops@acme.example"\n'
            f'priority = "medium"\nsource = "chat"\n'
        )
    if platform == "trello":
        return head + (
            f'action = "create_card"\n[actions.parameters]\nid_list = "5f1a2b3c4d5e6f7a8b9c0e01"\n'
            f'name = "{what}"\ndesc = "Rule {r}"\n'
        )
    if platform == "notion":
        return head + (
            f'action = "create_page"\n[actions.parameters]\ntitle = "Escalation: {what}"\n'
            f'markdown = "Opened by rule {r}."\n'
        )
    return head + (
        f'action = "append_row"\n[actions.parameters]\nsheet = "Solved"\n'
        f'values = ["{{{{ event.id }}}}", "{{{{ event.name }}}}", "rule {r}", "=NOW()"]\n'
    )


# A condition on the event's own fields, for every fifth rule (holds on some fixtures only),
# where the event has the field.
FIELD_CONDITION = {
    "freshdesk": '"ticket.subject" = { matches = "(?i)refund|outage|login" }\n',
    "zendesk": 'status = { ne = "closed" }\n',
    "slack": '"message.text" = { matches = "(?i)ticket|help" }\n',
    "trello": '"card.name" = { matches = "(?i)escalat|vip|bug" }\n',
    "notion": 'not = { "event.name" = "page.deleted" }\n',
    "google_sheets": '"row.sheet" = "Escalations log"\n',
}


def has_field(event: str) -> bool:
    """Whether `event` has the field FIELD_CONDITION reads on its platform."""
    return event not in ("reaction_added", "comment.created", "note_created")


def mixed(out: str, n_int: int, n_rules: int) -> None:
    for sub in ("integrations", "rules"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    # Integration i's platform: the mix laid out in blocks of 20 (5 Freshdesk, 5 Zendesk,
    # 5 Slack, 2 Trello, 2 Notion, 1 Google Sheets), so every prefix of the list is mixed.
    pattern = [p for p, _, share in MIX for _ in range(share // 5)]
    ints = []  # (platform, id)
    counters = {}
    for i in range(n_int):
        platform = pattern[i % len(pattern)]
        prefix = next(x for p, x, _ in MIX if p == platform)
        k = counters.get(platform, 0)
        counters[platform] = k + 1
        iid = f"{prefix}-{k:04d}"
        ints.append((platform, iid))
        with open(os.path.join(out, "integrations", f"{iid}.toml"), "w") as f:
            f.write(integration_toml(platform, iid, k))
    with open(os.path.join(out, "integrations", "alerts.toml"), "w") as f:
        f.write('id = "alerts"\nplatform = "supportopsd"\nname = "supportopsd alerts"\n')
    by_platform = {}
    for platform, iid in ints:
        by_platform.setdefault(platform, []).append(iid)
    for r in range(n_rules):
        platform, iid = ints[r % n_int]
        events = WORLD_EVENTS[platform]
        event = events[(r // n_int) % len(events)]
        # Actions on other platforms: the first always, a second for every third rule.
        others = [p for p, _, _ in MIX if p != platform and p in by_platform]
        targets = [others[r % len(others)]]
        if r % 3 == 0:
            targets.append(others[(r + 1) % len(others)])
        rid = f"{iid}-rule-{r}"
        text = (
            f'id = "{rid}"\nname = "Rule {r}: {event} on {iid}"\n'
            + ('enabled = false\n' if r % 50 == 49 else '')
            + f'\n[trigger]\nintegration = "{iid}"\nevent = "{event}"\n'
            + f'\n[trigger.conditions]\n"payload.supportopsd_bench_bucket" = {{ lt = {30 + r % 11} }}\n'
            + (FIELD_CONDITION[platform] if r % 5 == 0 and has_field(event) else '')
        )
        for t in targets:
            pool = by_platform[t]
            text += action_toml(t, pool[r % len(pool)], r)
        with open(os.path.join(out, "rules", f"{rid}.toml"), "w") as f:
            f.write(text)


def main() -> None:
    if sys.argv[1] == "--mixed":
        mixed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    out, n_int, n_rules = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for sub in ("integrations", "rules", "tests/fixtures"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    n_fd = n_int // 2
    n_slack = n_int - n_fd
    for i in range(n_fd):
        with open(os.path.join(out, "integrations", f"fd-{i}.toml"), "w") as f:
            f.write(
                f'id = "fd-{i}"\nplatform = "freshdesk"\nname = "Freshdesk {i}"\n\n'
                f'[credentials]\ndomain = "acme{i}.freshdesk.com"\n'
                f'api_key = {{ env = "FD_{i}_KEY" }}\n\n'
                f'[config]\nauto_assign = true\n\n'
                f'[webhook]\nevents = ["ticket_created", "ticket_updated"]\n'
                f'secret = {{ env = "FD_HOOK" }}\n'
            )
    for i in range(n_slack):
        with open(os.path.join(out, "integrations", f"slack-{i}.toml"), "w") as f:
            f.write(
                f'id = "slack-{i}"\nplatform = "slack"\n\n[credentials]\n'
                f'bot_token = {{ env = "SLACK_{i}_BOT" }}\n'
                f'signing_secret = {{ env = "SLACK_{i}_SIGNING" }}\n'
            )
    for r in range(n_rules):
        fd, sl = r % n_fd, r % n_slack
        with open(os.path.join(out, "rules", f"rule-{r}.toml"), "w") as f:
            f.write(
                f'id = "rule-{r}"\nname = "Rule {r}"\n\n[trigger]\nintegration = "fd-{fd}"\n'
                f'event = "ticket_created"\n\n[trigger.conditions]\npriority = {{ gte = {r % 4 + 1} }}\n'
                f'"ticket.subject" = {{ matches = "(?i)refund|outage {r}" }}\n\n'
                f'[[actions]]\nintegration = "slack-{sl}"\naction = "send_message"\n'
                f'[actions.parameters]\nchannel = "#queue-{r % 50}"\n'
                f'message = "Ticket {{{{ ticket.id }}}}: {{{{ ticket.subject | upper }}}} (rule {r})"\n'
            )


if __name__ == "__main__":
    main()
