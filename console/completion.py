"""Shell completion for bash and zsh, written out from the argparse parser itself.

`switchboard completion bash` / `zsh` print a script that completes subcommands, recovery
actions, options and option values (gates, shells, files): a new option of the parser is
completed without a change here. Written by hand, not with a library: the parser is small
and fixed (two levels: a command, and recovery's action).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

PATH_OPTIONS = {"-c", "--config", "--socket", "--state-dir"}


@dataclass
class Node:
    """One (sub)command: what may follow it."""

    help: str = ""
    options: dict[str, str] = field(default_factory=dict)  # option -> its help
    option_values: dict[str, list[str]] = field(default_factory=dict)  # option -> choices
    takes_value: set[str] = field(default_factory=set)
    choices: list[str] = field(default_factory=list)  # a positional with fixed choices
    children: dict[str, Node] = field(default_factory=dict)


def tree(parser: argparse.ArgumentParser, help: str = "") -> Node:
    node = Node(help=help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                node.children[name] = tree(sub, helps.get(name, ""))
        elif action.option_strings:
            for option in action.option_strings:
                if option in ("-h", "--help", "--version"):
                    continue
                node.options[option] = action.help or ""
                if action.nargs != 0:
                    node.takes_value.add(option)
                if action.choices:
                    node.option_values[option] = [str(c) for c in action.choices]
        elif action.choices:
            node.choices = [str(c) for c in action.choices]
    return node


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    root = tree(parser)
    return _bash(root) if shell == "bash" else _zsh(root)


# -- bash -------------------------------------------------------------------------------------


def _words(values: list[str] | dict[str, str]) -> str:
    return " ".join(values)


def _bash(root: Node) -> str:
    keys: list[tuple[str, Node]] = [("", root)]
    for name, child in root.children.items():
        keys.append((name, child))
        keys.extend((f"{name} {action}", grand) for action, grand in child.children.items())
    values, arms = [], []
    for key, node in keys:
        for option, choices in node.option_values.items():
            values.append(f'        "{key}|{option}") words="{_words(choices)}" ;;')
        for option in sorted(node.takes_value & PATH_OPTIONS):
            values.append(f'        "{key}|{option}") files=1 ;;')
        following = _words(list(node.children or node.choices))
        arms.append(f'        "{key}") next="{following}"; options="{_words(node.options)}" ;;')
    return f"""# bash completion for switchboard: source this file, or save it as
# ~/.local/share/bash-completion/completions/switchboard  (switchboard completion bash)
_switchboard() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local command="" action="" word words="" files=0 next="" options=""
    local i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        case "$word" in
            -*) ;;
            *) if [[ -z "$command" ]]; then command="$word"
               elif [[ "$command" == recovery && -z "$action" ]]; then action="$word"; fi ;;
        esac
    done
    local key="$command${{action:+ $action}}"
    case "$key|$prev" in
{chr(10).join(values)}
    esac
    if [[ -n "$words" ]]; then COMPREPLY=($(compgen -W "$words" -- "$cur")); return; fi
    if ((files)); then COMPREPLY=($(compgen -f -- "$cur")); return; fi
    case "$key" in
{chr(10).join(arms)}
    esac
    if [[ "$cur" == -* || -z "$next" ]]; then
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$next" -- "$cur"))
    fi
}}
complete -F _switchboard switchboard
"""


# -- zsh --------------------------------------------------------------------------------------


def _quoted(text: str) -> str:
    """Inside a zsh single-quoted word."""
    return text.replace("'", "'\\''")


def _described(name: str, help: str) -> str:
    """An item for _describe: name:description (colons in the name escaped)."""
    return "'" + _quoted(name.replace(":", "\\:") + ":" + help) + "'"


def _specs(node: Node) -> list[str]:
    specs = []
    for option, help in node.options.items():
        text = _quoted(help.replace("[", "\\[").replace("]", "\\]"))
        if option in node.option_values:
            value = f":value:({' '.join(node.option_values[option])})"
        elif option in PATH_OPTIONS:
            value = ":path:_files"
        elif option in node.takes_value:
            value = ":value: "
        else:
            value = ""
        specs.append(f"'{option}[{text}]{value}'")
    if node.choices:
        specs.append(f"'1:choice:({' '.join(node.choices)})'")
    return specs


def _zsh_level(node: Node, depth: int, indent: str) -> list[str]:
    """Complete what follows `node`, whose name is at $words[depth]."""
    lines = []
    if node.children:
        items = " ".join(_described(name, child.help) for name, child in node.children.items())
        lines += [
            f"{indent}if (( CURRENT == {depth + 1} )); then",
            f"{indent}    local -a choices; choices=({items})",
            f"{indent}    _describe 'command' choices; return",
            f"{indent}fi",
            f"{indent}case $words[{depth + 1}] in",
        ]
        for name, child in node.children.items():
            lines.append(f"{indent}    {name})")
            lines += _zsh_level(child, depth + 1, indent + "        ")
            lines.append(f"{indent}        ;;")
        lines.append(f"{indent}esac")
        return lines
    # _arguments reads words[1] as the command itself: drop what comes before it.
    return [
        f"{indent}shift {depth - 1} words; (( CURRENT -= {depth - 1} ))",
        f"{indent}_arguments {' '.join(_specs(node))}",
    ]


def _zsh(root: Node) -> str:
    body = "\n".join(_zsh_level(root, 1, "    "))
    return f"""#compdef switchboard
# zsh completion for switchboard: save it as _switchboard in a directory of $fpath
# (switchboard completion zsh > ~/.zfunc/_switchboard; fpath+=~/.zfunc; compinit)
_switchboard() {{
{body}
}}
_switchboard "$@"
"""
