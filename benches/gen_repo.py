#!/usr/bin/env python3
"""Generate a large manifest repository for benchmarks.

usage: gen_repo.py DIR INTEGRATIONS RULES

Half the integrations are Freshdesk (rule triggers), half Slack (rule actions). Every rule has
conditions and a templated action, so validate exercises schemas, references, conditions and
template checks at scale.
"""
import os
import sys


def main() -> None:
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
