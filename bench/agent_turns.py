"""A/B driver shared by the KV-reuse benches (agent_kv.py on MLX, llama_reuse.py on llama.cpp):
rollouts of real scenarios advanced turn by turn both ways, with real tool results."""

from __future__ import annotations

import time

from localchar.agent.loop import first_messages, tool_turn
from localchar.agent.scenarios import load_scenarios
from localchar.agent.tools import EmailClient
from localchar.paths import DATA


def tool_result(client, scenario, turn: int) -> str:
    """What a competent agent would read next: the inbox, then each email in turn."""
    if turn == 0:
        return client.execute("list_inbox", {})
    emails = scenario["emails"]
    return client.execute("read_email", {"email_id": emails[(turn - 1) % len(emails)]["id"]})


def ab_turns(rollouts: int, turns: int, call, label: str) -> tuple[dict, int, int]:
    """Advance `rollouts` scenarios for `turns` turns. Every turn runs both ways, alternating which
    goes first: `call(reuse, chats, keys, turn)` returns (texts, prompt tokens, tokens prefilled);
    the transcripts continue with the reuse side's replies. Returns (seconds per way, replies equal
    both ways, replies)."""
    scenarios = load_scenarios(DATA / "scenarios")[:rollouts]
    clients = [EmailClient(s) for s in scenarios]
    chats = [first_messages(s) for s in scenarios]
    keys = [f"r{i}" for i in range(len(chats))]
    secs, same = {False: 0.0, True: 0.0}, 0
    print(f"turn  prompt tokens  prefilled {label}")
    for turn in range(turns):
        out = {}
        for reuse in ((False, True) if turn % 2 == 0 else (True, False)):
            t0 = time.perf_counter()
            out[reuse], prompt, prefilled = call(reuse, chats, keys, turn)
            secs[reuse] += time.perf_counter() - t0
            if reuse:
                shown = (prompt, prefilled)
        same += sum(x == y for x, y in zip(out[True], out[False]))
        print(f"{turn + 1:4d}  {shown[0]:13d}  {shown[1]:10d}")
        for i, (c, text) in enumerate(zip(chats, out[True])):
            c += [{"role": "assistant", "content": text}, *tool_turn([tool_result(clients[i], scenarios[i], turn)])]
    return secs, same, turns * len(chats)
