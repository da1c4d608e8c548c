"""`coop completion bash|zsh|fish`: completion scripts generated from the parser itself,
so they never fall out of date with the commands and options."""

from __future__ import annotations

import argparse


def _commands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Subcommand -> its option strings; "" holds the global options."""
    table: dict[str, list[str]] = {"": []}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                table[name] = [opt for a in sub._actions for opt in a.option_strings]
        else:
            table[""] += action.option_strings
    return table


def completion_script(shell: str, parser: argparse.ArgumentParser) -> str:
    table = _commands(parser)
    commands = " ".join(k for k in table if k)
    if shell == "fish":
        lines = [f"complete -c coop -f -n '__fish_use_subcommand' -a '{commands}'"]
        for name, options in table.items():
            cond = f"__fish_seen_subcommand_from {name}" if name else "__fish_use_subcommand"
            for opt in options:
                flag = f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}"
                lines.append(f"complete -c coop -n '{cond}' {flag}")
        return "\n".join(lines) + "\n"
    cases = "\n".join(f'        {name}) opts="{" ".join(options)}" ;;'
                      for name, options in table.items() if name)
    script = f"""_coop() {{
    local cur cmd opts
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    cmd="${{COMP_WORDS[1]}}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=( $(compgen -W "{commands} {" ".join(table[""])}" -- "$cur") )
        return
    fi
    case "$cmd" in
{cases}
        *) opts="" ;;
    esac
    COMPREPLY=( $(compgen -W "$opts" -f -- "$cur") )
}}
complete -F _coop coop
"""
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + script
    return script
