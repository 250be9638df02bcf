# bash completion for mailhaul(1)                      -*- shell-script -*-
# Commands and options as in `mailhaul --help`; account, target and
# [oauth2:NAME] names from the config file (-c FILE, or the default).

_mailhaul_config()
{
    local i f
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        -c | --config) f=${COMP_WORDS[i + 1]} ;;
        --config=*) f=${COMP_WORDS[i]#--config=} ;;
        *) continue ;;
        esac
        printf '%s' "${f/#\~/$HOME}"
        return
    done
    printf '%s' "${XDG_CONFIG_HOME:-$HOME/.config}/mailhaul/config.ini"
}

# The names of the config's [KIND:NAME] sections (KIND in any case).
_mailhaul_names()
{
    local cfg
    cfg=$(_mailhaul_config 2>/dev/null)
    [[ -r $cfg ]] || return
    sed -n "s/^[[:space:]]*\[$1:\([^]]*\)\].*/\1/Ip" "$cfg" 2>/dev/null
}

_mailhaul()
{
    local cur prev words cword
    _init_completion || return

    local commands="sync run check status mark-seen retry forget config auth
        import help"
    local global="-c --config -v --verbose -q --quiet -h --help -V --version"
    local cmd i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
        -c | --config) ((i++)) ;;
        -*) ;;
        *)
            cmd=${words[i]}
            break
            ;;
        esac
    done

    case $prev in
    -c | --config | --rc | --state | -o | --output)
        _filedir
        return
        ;;
    --target)
        COMPREPLY=($(compgen -W "$(_mailhaul_names target)" -- "$cur"))
        return
        ;;
    --account)
        COMPREPLY=($(compgen -W "$(_mailhaul_names account)" -- "$cur"))
        return
        ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    local opts="-h --help" names=""
    case $cmd in
    sync) opts+=" -n --dry-run"; names=$(_mailhaul_names account) ;;
    check)
        opts+=" --target --account"
        names=$(_mailhaul_names account)
        ;;
    status) opts+=" --json" ;;
    mark-seen | retry) names=$(_mailhaul_names account) ;;
    forget) opts+=" -y --yes"; names=$(_mailhaul_names account) ;;
    auth)
        opts+=" --device --no-browser --check --refresh"
        names=$(_mailhaul_names oauth2)
        ;;
    import)
        opts+=" --rc --state -o --output"
        [[ $prev == import ]] && names="fetchmail getmail"
        ;;
    help) [[ $prev == help ]] && names=$commands ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$names" -- "$cur"))
    fi
} &&
    complete -F _mailhaul mailhaul

# ex: filetype=sh
