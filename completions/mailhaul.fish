# fish completion for mailhaul(1).  Commands and options as in
# `mailhaul --help`; account, target and [oauth2:NAME] names from the
# config file (-c FILE, or the default).

# The names of the config's [KIND:NAME] sections (KIND in any case).
function __mailhaul_names --argument-names kind
    set -l cfg
    set -l tokens (commandline -opc)
    for i in (seq (count $tokens))
        switch $tokens[$i]
            case -c --config
                set cfg $tokens[(math $i + 1)]
            case '--config=*'
                set cfg (string replace -- --config= '' $tokens[$i])
        end
    end
    if test -z "$cfg"
        set -q XDG_CONFIG_HOME; and set cfg $XDG_CONFIG_HOME/mailhaul/config.ini
        or set cfg $HOME/.config/mailhaul/config.ini
    end
    set cfg (string replace -r '^~' $HOME -- $cfg)
    test -r "$cfg"; or return
    sed -n "s/^[[:space:]]*\[$kind:\([^]]*\)\].*/\1/Ip" $cfg 2>/dev/null
end

set -l cmds sync run check status mark-seen retry forget config auth import help
complete -c mailhaul -f
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -s c -l config -r -F -d 'config file'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -s v -l verbose -d 'debug logging, protocol transcripts'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -s q -l quiet -d 'errors only'
complete -c mailhaul -s h -l help -d 'show the usage'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -s V -l version -d 'show the version'

complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a sync -d 'one pass over the enabled accounts (or those named)'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a run -d 'the background service until SIGTERM'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a check -d 'connect, TLS, login and the targets'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a status -d 'per account: last pass, result, counts'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a mark-seen -d 'record what is on the server as delivered'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a retry -d 'retry the messages refused for good or stuck'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a forget -d 'drop everything recorded about an account'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a config -d 'validate the config and print it'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a auth -d 'obtain OAuth2 tokens for [oauth2:NAME]'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a import -d 'convert a fetchmail or getmail setup'
complete -c mailhaul -n "not __fish_seen_subcommand_from $cmds" -a help -d 'the commands, or one command'

complete -c mailhaul -n "__fish_seen_subcommand_from sync" -s n -l dry-run -d 'show what would be done'
complete -c mailhaul -n "__fish_seen_subcommand_from sync check mark-seen retry forget" -a '(__mailhaul_names account)'
complete -c mailhaul -n "__fish_seen_subcommand_from check" -l target -x -a '(__mailhaul_names target)' -d 'check this target alone'
complete -c mailhaul -n "__fish_seen_subcommand_from check" -l account -x -a '(__mailhaul_names account)' -d 'check this account'
complete -c mailhaul -n "__fish_seen_subcommand_from status" -l json -d 'one JSON object'
complete -c mailhaul -n "__fish_seen_subcommand_from forget" -s y -l yes -d 'do not ask'
complete -c mailhaul -n "__fish_seen_subcommand_from auth" -a '(__mailhaul_names oauth2)'
complete -c mailhaul -n "__fish_seen_subcommand_from auth" -l device -d 'a code to enter on another device'
complete -c mailhaul -n "__fish_seen_subcommand_from auth" -l no-browser -d 'print the URL, open no browser'
complete -c mailhaul -n "__fish_seen_subcommand_from auth" -l check -d 'get an access token as sync would'
complete -c mailhaul -n "__fish_seen_subcommand_from auth" -l refresh -d 'with --check: a new token'
complete -c mailhaul -n "__fish_seen_subcommand_from import; and not __fish_seen_subcommand_from fetchmail getmail" -a 'fetchmail getmail'
complete -c mailhaul -n "__fish_seen_subcommand_from import" -l rc -r -F -d "the tool's config"
complete -c mailhaul -n "__fish_seen_subcommand_from import" -l state -r -F -d "the tool's seen-UID state"
complete -c mailhaul -n "__fish_seen_subcommand_from import" -s o -l output -r -F -d 'the config to write'
complete -c mailhaul -n "__fish_seen_subcommand_from help" -a "$cmds"
