"""Print the README's "On a fresh machine" commands, one per line, exactly as a user would paste them.

Usage: python .ci/readme_commands.py README.md [N]   (N: how many commands; default all)
A block's lines are joined (continuation backslashes dropped, comment lines skipped).
"""
import re
import sys


def fresh_machine_commands(text: str) -> list[str]:
    section = re.search(r"^##[^\n]*fresh machine[^\n]*\n(.*?)(?=^## )", text, re.S | re.M | re.I)
    if not section:
        raise SystemExit("README.md has no '## ... fresh machine' section")
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", section.group(1), re.S)
    return [" ".join(line.strip().rstrip("\\").strip() for line in block.strip().splitlines()
                     if line.strip() and not line.strip().startswith("#")) for block in blocks]


if __name__ == "__main__":
    commands = fresh_machine_commands(open(sys.argv[1], encoding="utf-8").read())
    count = int(sys.argv[2]) if len(sys.argv) > 2 else len(commands)
    if len(commands) < count:
        raise SystemExit(f"README.md has {len(commands)} commands under 'fresh machine', expected {count}")
    print("\n".join(commands[:count]))
