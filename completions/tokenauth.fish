# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tokenauth_global_optspecs
    string join \n db= server= k/key= sub= scope= private-key= ca-cert= token= h/help V/version
end

function __fish_tokenauth_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tokenauth_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tokenauth_using_subcommand
    set -l cmd (__fish_tokenauth_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tokenauth -n "__fish_tokenauth_needs_command" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_needs_command" -l server -d 'Run the admin commands (user, issue-key, list-keys, edit-key, revoke-key, rotate-secret, token, trust, audit, usage-log, report) on this server\'s admin API (`serve --admin-api`) instead of a local store, with --key or --token as the caller' -r
complete -c tokenauth -n "__fish_tokenauth_needs_command" -s k -l key -d 'The key file: its path, `-` for standard input, or its JSON itself' -r
complete -c tokenauth -n "__fish_tokenauth_needs_command" -l sub -d 'Act as this user instead of the key\'s own (needs the impersonate permission)' -r
complete -c tokenauth -n "__fish_tokenauth_needs_command" -l scope -d 'Scopes to ask for, space-separated (read, write) [default: the key\'s scope]' -r
complete -c tokenauth -n "__fish_tokenauth_needs_command" -l private-key -d 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)' -r -F
complete -c tokenauth -n "__fish_tokenauth_needs_command" -l ca-cert -d 'Also trust this CA certificate (PEM; the file may hold several) when checking the server\'s certificate, e.g. a private CA; the system\'s roots stay trusted' -r -F
complete -c tokenauth -n "__fish_tokenauth_needs_command" -l token -d 'With --server: a bearer token to call the admin API with (a personal access token or an access token) instead of a key file' -r
complete -c tokenauth -n "__fish_tokenauth_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "init" -d 'Create the store and record the token URI that key files will carry'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "user" -d 'Manage users: the accounts service keys act for'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "issue-key" -d 'Issue a service key for a user and write its key file'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "keygen" -d 'Make a key pair where the client runs: the private key never leaves this machine'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "list-keys" -d 'List service keys'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "edit-key" -d 'Change a key\'s title, IP ranges or allowed browser origins'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "revoke-key" -d 'Revoke a service key'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "rotate-secret" -d 'Replace a user\'s signing secret: every access token of that user stops working, and so do the tokens its keys issued for other users (impersonation)'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "token" -d 'Manage personal access tokens: static bearer tokens for callers that cannot sign grants'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "trust" -d 'Manage trust relationships: CI jobs get access tokens with their platform\'s own ID token, and no stored secret (keyless CI)'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "sign-grant" -d 'Sign a JWT grant (RFC 7523) with a key file and print it'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "serve" -d 'Run the token endpoint (RFC 7523 jwt-bearer) and the token checks for resource servers'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "get-token" -d 'Get an access token with a key file or a CI job\'s ID token, from the cache when it is still good'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "request" -d 'Send an HTTP request with a bearer token from a key file (or a CI job\'s ID token, with --oidc), or with a token as it is'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "verify" -d 'Check an access token or a personal access token against the store, without a server'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "usage-log" -d 'Show the usage log: every token issuance and refused attempt, newest first'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "audit" -d 'Show who changed what: the admin audit trail, newest first'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "report" -d 'Report keys and personal access tokens that need attention'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "store" -d 'Work on whole stores'
complete -c tokenauth -n "__fish_tokenauth_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand init" -l token-uri -d 'The token endpoint\'s URL, written into every key file [default: http://127.0.0.1:8080/token]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand init" -l issuer -d 'The issuer named in access tokens and accepted as a grant audience [default: the token URI without its last path segment]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand init" -l service-documentation -d 'A page about this server for client developers, published in the RFC 8414 metadata' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand init" -l audit-retention -d 'How long admin audit rows are kept (e.g. 400d, 2y); older rows are pruned as new ones are written, and `audit verify` checks from where pruning stopped [default: 1y]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand init" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand init" -l json -d 'Print the settings as JSON'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand init" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -f -a "add" -d 'Create a user with a fresh random secret'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -f -a "list" -d 'List users, their permissions and state'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -f -a "remove" -d 'Remove a user that has no active keys'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -f -a "grant" -d 'Give a user a permission'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -f -a "revoke" -d 'Take a permission away from a user'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -f -a "disable" -d 'Disable a user: grants are refused and its tokens stop working at once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -f -a "enable" -d 'Enable a disabled user again'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and not __fish_seen_subcommand_from add list remove grant revoke disable enable help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from add" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from list" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from list" -l json -d 'Print JSON instead of a table'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from list" -l wide -d 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from remove" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from remove" -s y -l yes -d 'Do not ask for confirmation'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from grant" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from grant" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from grant" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from revoke" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from disable" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from disable" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from enable" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from enable" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "add" -d 'Create a user with a fresh random secret'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "list" -d 'List users, their permissions and state'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a user that has no active keys'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "grant" -d 'Give a user a permission'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Take a permission away from a user'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "disable" -d 'Disable a user: grants are refused and its tokens stop working at once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "enable" -d 'Enable a disabled user again'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l user -d 'The user the key acts for (created if absent)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l title -d 'A note saying what the key is for' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l ip-range -d 'Addresses allowed to use the key: IPs or CIDR networks, comma-separated (e.g. "192.168.1.1, 10.0.0.0/8, 2001:db8::/32") [default: anywhere]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l scope -d 'The most the key\'s tokens may do; `write` implies `read`' -r -f -a "read\t'Read-only access'
write\t'Read and write access'"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l expires -d 'When the key stops working: a duration from now (90d, 12h) or a date (2027-01-31) [default: never]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l origin -d 'A browser origin (scheme://host[:port]) whose pages may use the key\'s tokens from another site (repeatable) [default: none]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l alg -d 'The signing algorithm: RS256 (RSA; what ftw.tokenauth clients sign with), ES256 (P-256) or EdDSA (Ed25519). The key accepts grants of this algorithm only [default: RS256, or that of --public-key]' -r -f -a "RS256\t''
ES256\t''
EdDSA\t''"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l bits -d 'RSA key size' -r -f -a "2048\t''
3072\t''
4096\t''"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l public-key -d 'Register this public key instead of generating a pair: a PEM public key, a JWK, or a JWKS holding one key (`-` reads standard input). The private key stays with the client' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l format -d 'The key file\'s layout: tokenauth\'s, or a Google service-account file' -r -f -a "tokenauth\t'tokenauth\'s (and ftw.tokenauth\'s) JSON: key_id, client_id, user_id, issued, token_uri, private_key, alg'
google\t'A Google service-account key file (RS256): google-auth and the Google client libraries load it unchanged'"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -s o -l out -d 'Where to write the key file; `-` prints it to stdout [default: ./<user>-<short key id>.json]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l pkcs8 -d 'Write an RSA private key as PKCS#8 (BEGIN PRIVATE KEY), which more libraries read (Node\'s jose, Java), rather than PKCS#1 (BEGIN RSA PRIVATE KEY), which ftw.tokenauth clients read. ES256 and EdDSA keys, and --format google files, are always PKCS#8'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -l json -d 'Print the key\'s metadata as JSON (not with --out -)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand issue-key" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand keygen" -l alg -d 'The algorithm: RS256 (RSA), ES256 (P-256) or EdDSA (Ed25519)' -r -f -a "RS256\t''
ES256\t''
EdDSA\t''"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand keygen" -l bits -d 'RSA key size, with --alg RS256' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand keygen" -s o -l out -d 'Where to write the private key' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand keygen" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand keygen" -l json -d 'Print the public key, its key id and JWK as JSON'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand keygen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand keygen" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -l user -d 'Only this user\'s keys' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -l expiring-within -d 'Only keys that expire within this long from now (e.g. 30d), and have not yet' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -l unused-for -d 'Only keys unused for at least this long (e.g. 90d); a key never used counts from its issue' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -l scope -d 'Only keys of this scope' -r -f -a "read\t'Read-only access'
write\t'Read and write access'"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -l state -d 'Only keys in this state' -r -f -a "active\t''
revoked\t''
expired\t''"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -l all -d 'Include revoked keys'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -l json -d 'Print JSON instead of a table'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -l wide -d 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand list-keys" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand edit-key" -l title -d 'A new title' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand edit-key" -l ip-range -d 'New IP ranges, comma-separated IPs or CIDR networks' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand edit-key" -l origin -d 'Browser origins whose pages may use the key\'s tokens from another site, replacing the current list (repeatable)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand edit-key" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand edit-key" -l no-ip-range -d 'Remove the IP restriction: the key works from anywhere'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand edit-key" -l no-origin -d 'Remove every allowed origin: only same-site callers and non-browser clients'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand edit-key" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand edit-key" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand revoke-key" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand revoke-key" -s y -l yes -d 'Do not ask for confirmation'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand revoke-key" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand revoke-key" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand rotate-secret" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand rotate-secret" -l all-users -d 'Replace every user\'s secret'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand rotate-secret" -s y -l yes -d 'Do not ask for confirmation'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand rotate-secret" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand rotate-secret" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and not __fish_seen_subcommand_from create list edit revoke help" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and not __fish_seen_subcommand_from create list edit revoke help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and not __fish_seen_subcommand_from create list edit revoke help" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and not __fish_seen_subcommand_from create list edit revoke help" -f -a "create" -d 'Create a personal access token and print it, this once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and not __fish_seen_subcommand_from create list edit revoke help" -f -a "list" -d 'List personal access tokens, never the tokens themselves'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and not __fish_seen_subcommand_from create list edit revoke help" -f -a "edit" -d 'Change a token\'s description, scope, IP ranges or allowed origins'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and not __fish_seen_subcommand_from create list edit revoke help" -f -a "revoke" -d 'Revoke a personal access token: it stops working at once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and not __fish_seen_subcommand_from create list edit revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from create" -l user -d 'The user the token acts for (created if absent)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from create" -l scope -d 'The most the token may do; `write` implies `read`' -r -f -a "read\t'Read-only access'
write\t'Read and write access'"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from create" -l description -d 'What the token is for' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from create" -l expires -d 'When the token stops working: a duration from now (90d, 12h) or a date (2027-01-31) [default: never]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from create" -l ip-range -d 'Addresses allowed to use the token: IPs or CIDR networks, comma-separated [default: anywhere]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from create" -l origin -d 'A browser origin (scheme://host[:port]) whose pages may use the token from another site (repeatable) [default: none]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from create" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from create" -l json -d 'Print the token and its metadata as JSON'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from list" -l user -d 'Only this user\'s tokens' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from list" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from list" -l all -d 'Include revoked tokens'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from list" -l json -d 'Print JSON instead of a table'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from list" -l wide -d 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from edit" -l description -d 'A new description' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from edit" -l scope -d 'A new scope' -r -f -a "read\t'Read-only access'
write\t'Read and write access'"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from edit" -l ip-range -d 'New IP ranges, comma-separated IPs or CIDR networks' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from edit" -l origin -d 'Browser origins whose pages may use the token from another site, replacing the current list (repeatable)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from edit" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from edit" -l no-ip-range -d 'Remove the IP restriction: the token works from anywhere'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from edit" -l no-origin -d 'Remove every allowed origin'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from edit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from edit" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from revoke" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from revoke" -s y -l yes -d 'Do not ask for confirmation'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a personal access token and print it, this once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "list" -d 'List personal access tokens, never the tokens themselves'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "edit" -d 'Change a token\'s description, scope, IP ranges or allowed origins'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a personal access token: it stops working at once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and not __fish_seen_subcommand_from add list show edit remove help" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and not __fish_seen_subcommand_from add list show edit remove help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and not __fish_seen_subcommand_from add list show edit remove help" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and not __fish_seen_subcommand_from add list show edit remove help" -f -a "add" -d 'Trust an issuer\'s ID tokens that have the given claims'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and not __fish_seen_subcommand_from add list show edit remove help" -f -a "list" -d 'List trust relationships'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and not __fish_seen_subcommand_from add list show edit remove help" -f -a "show" -d 'Show every field of a trust relationship'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and not __fish_seen_subcommand_from add list show edit remove help" -f -a "edit" -d 'Change a trust relationship\'s audience, claims, users, scope, limits or keys'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and not __fish_seen_subcommand_from add list show edit remove help" -f -a "remove" -d 'Remove a trust relationship: the access tokens it got stop working at once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and not __fish_seen_subcommand_from add list show edit remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l issuer -d 'The issuer: exactly the `iss` of its ID tokens (https; http only on a loopback host)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l audience -d 'The `aud` the ID tokens must carry (what the job asks its platform for)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l claim -d 'A claim the ID token must have, with this value: exact, except that `*` matches any run of characters (repeatable; all must match)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l user -d 'The user the access tokens are for; with --user-claim, a user the claim may name (repeatable)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l user-claim -d 'Take the user from this claim of the ID token, limited to the --user names' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l scope -d 'The most the access tokens may do; `write` implies `read`' -r -f -a "read\t'Read-only access'
write\t'Read and write access'"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l ip-range -d 'Addresses allowed to use the trust: IPs or CIDR networks, comma-separated [default: anywhere]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l origin -d 'A browser origin (scheme://host[:port]) whose pages may use the access tokens from another site (repeatable) [default: none]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l expires -d 'When the trust stops working: a duration from now (90d, 12h) or a date (2027-01-31) [default: never]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l max-age -d 'How old (since its `iat`) an ID token may be when exchanged, 1s to 24h [default: 1h]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l jwks-uri -d 'Fetch the issuer\'s keys from this URL instead of the one its discovery document names' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l jwks-file -d 'The issuer\'s keys from this JWKS file: nothing is fetched (for an issuer the server cannot reach)' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -l json -d 'Print the trust as JSON'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from list" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from list" -l json -d 'Print JSON instead of a table'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from list" -l wide -d 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from show" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from show" -l json -d 'Print JSON instead of a table'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l issuer -d 'Refused: a trust\'s issuer cannot be changed; remove the trust and add it again' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l audience -d 'A new audience' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l claim -d 'Bind a claim, or change the value of one already bound (repeatable)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l remove-claim -d 'Stop binding this claim (repeatable)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l user -d 'The users, replacing the current list (repeatable)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l user-claim -d 'Take the user from this claim of the ID token, limited to the trust\'s users' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l scope -d 'A new scope' -r -f -a "read\t'Read-only access'
write\t'Read and write access'"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l ip-range -d 'New IP ranges, comma-separated IPs or CIDR networks' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l origin -d 'Browser origins whose pages may use the access tokens from another site, replacing the current list (repeatable)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l max-age -d 'A new maximum age of ID tokens, 1s to 24h' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l expires -d 'A new expiry: a duration from now (90d) or a date (2027-01-31)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l jwks-uri -d 'Fetch the issuer\'s keys from this URL (instead of a JWKS file or discovery)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l jwks-file -d 'The issuer\'s keys from this JWKS file from now on: nothing is fetched' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l no-user-claim -d 'Stop taking the user from a claim: the tokens are for the trust\'s one user'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l no-ip-range -d 'Remove the IP restriction: the trust works from anywhere'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l no-origin -d 'Remove every allowed origin'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l no-expiry -d 'Remove the expiry: the trust works until removed'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l discover -d 'Find the issuer\'s keys through its discovery document again (drops --jwks-uri and the JWKS file)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -l json -d 'Print the changed trust as JSON'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from edit" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from remove" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from remove" -s y -l yes -d 'Do not ask for confirmation'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from remove" -l json -d 'Print the removed trust as JSON'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from help" -f -a "add" -d 'Trust an issuer\'s ID tokens that have the given claims'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from help" -f -a "list" -d 'List trust relationships'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show every field of a trust relationship'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from help" -f -a "edit" -d 'Change a trust relationship\'s audience, claims, users, scope, limits or keys'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a trust relationship: the access tokens it got stop working at once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand trust; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -s k -l key -d 'The key file: its path, `-` for standard input, or its JSON itself' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -l sub -d 'Act as this user instead of the key\'s own (needs the impersonate permission)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -l scope -d 'Scopes to ask for, space-separated (read, write) [default: the key\'s scope]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -l private-key -d 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -l lifetime -d 'Seconds until the grant expires (at most 86400)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -l aud -d 'The audience [default: the key file\'s token_uri]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -l count -d 'Print this many grants, one per line, each with its own jti (to hand a batch of single-use grants to a job, or to load-test the token endpoint)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -l no-jti -d 'Leave out the jti claim (for servers that reject jti). tokenauth still takes such a grant only once, by its signature, and `serve --require-jti` refuses it'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand sign-grant" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l listen -d 'The address to listen on: HOST:PORT (port 0 picks a free port), or unix:PATH for a Unix socket that only a local proxy can reach; X-Forwarded-For from the socket is believed' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l socket-mode -d 'The Unix socket\'s file mode (octal), with --listen unix:PATH: who may connect [default: 0660]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l token-lifetime -d 'Access-token lifetime in seconds' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l usage-retention -d 'How long usage-log rows are kept (each key\'s newest row is always kept)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l feed-retention -d 'How long the store\'s change feed keeps entries: a server that could not follow it for longer (stopped, cut off from the database) loads everything again when it can' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l oidc-max-stale -d 'How long a trust\'s issuer keys stay in use after they could last be fetched: past that, while the issuer stays unreachable, its ID tokens are refused (fail closed)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l trusted-proxy -d 'A proxy whose X-Forwarded-For is believed (an IP or CIDR network; repeatable)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l public-origin -d 'This site\'s own origin (repeatable): browser requests from it are same-site, and keys need not list it [default: the issuer\'s origin]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l header-timeout -d 'Close a connection whose request head is not complete this long after its first byte' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l body-timeout -d 'Answer 408 when a request body is not complete this long after its head' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l idle-timeout -d 'Close a kept-alive connection after this long without a request (longer than a proxy\'s upstream keep-alive, so that the proxy closes first)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l request-timeout -d 'Answer 503 when a request is not answered this long after its head' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l rate-limit -d 'Rate limits on /token, /revoke, /introspect and the admin API (repeatable): a token bucket per client address (IPv6: per /64) and one per key or personal access token (once the caller proved it holds it). Over a limit the answer is 429 with Retry-After. Give `address=COUNT/UNIT[:BURST]` or `key=COUNT/UNIT[:BURST]` (UNIT: s, min or h; BURST defaults to ten times COUNT), `address=off`, `key=off`, `off` for none, or `default`. [default: address=100/s:1000, key=50/s:500]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l max-connections -d 'Connections open at once; further ones wait in the listen backlog until one closes' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l tls-cert -d 'Serve HTTPS with this certificate chain (PEM, server certificate first); needs --tls-key. SIGHUP reloads both files without dropping connections' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l tls-key -d 'The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l metrics-listen -d 'Serve GET /metrics on this address (plain HTTP) instead of on --listen, e.g. to keep it off a public interface' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l log-format -d 'Log lines as text or as JSON objects (one per line)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line, fields at the top level'"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l require-jti -d 'Refuse grants without a jti claim (without this flag, such a grant is good for one exchange: an exact copy is refused until it expires)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l admin-api -d 'Serve the remote admin API under /admin/v1 (JSON), for callers whose user holds the admin permission (write scope for changes) or, for their own keys and tokens, manage-own-keys; the CLI drives it with `tokenauth --server URL`'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -l no-access-log -d 'Do not log a line per request'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand serve" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -s k -l key -d 'The key file: its path, `-` for standard input, or its JSON itself' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l sub -d 'Act as this user instead of the key\'s own (needs the impersonate permission)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l scope -d 'Scopes to ask for, space-separated (read, write) [default: the key\'s scope]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l private-key -d 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l oidc -d 'Get the token with the CI job\'s OpenID Connect ID token instead of a key file: github, gitlab, file:PATH or env:VAR' -r -f -a "github\t''
gitlab\t''"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l token-uri -d 'With --oidc: the server\'s token endpoint (a key file names its own), e.g. https://auth.example.com/token; also from TOKENAUTH_TOKEN_URI' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l audience -d 'With --oidc github: the audience to ask GitHub for, which must be the trust\'s [default: the server\'s issuer, the token URI without its last path segment]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l trust -d 'With --oidc: the trust to use when several of the server\'s trusts of the token\'s issuer would match (sent as client_id)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l ca-cert -d 'Also trust this CA certificate (PEM; the file may hold several) when checking the server\'s certificate, e.g. a private CA; the system\'s roots stay trusted' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l format -d 'What to print' -r -f -a "token\t'The bare token'
json\t'The token response plus an absolute expires_at'
header\t'An `Authorization: Bearer …` header line'
env\t'TOKENAUTH_TOKEN=… lines for eval or $GITHUB_ENV (quoted for the shell when needed)'"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l min-valid -d 'Reuse a cached token only while it has more than this many seconds left' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -l no-cache -d 'Always ask the server; neither read nor write the cache'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand get-token" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -s k -l key -d 'The key file: its path, `-` for standard input, or its JSON itself' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l sub -d 'Act as this user instead of the key\'s own (needs the impersonate permission)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l scope -d 'Scopes to ask for, space-separated (read, write) [default: the key\'s scope]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l private-key -d 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l oidc -d 'Get the token with the CI job\'s OpenID Connect ID token instead of a key file: github, gitlab, file:PATH or env:VAR' -r -f -a "github\t''
gitlab\t''"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l token-uri -d 'With --oidc: the server\'s token endpoint (a key file names its own), e.g. https://auth.example.com/token; also from TOKENAUTH_TOKEN_URI' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l audience -d 'With --oidc github: the audience to ask GitHub for, which must be the trust\'s [default: the server\'s issuer, the token URI without its last path segment]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l trust -d 'With --oidc: the trust to use when several of the server\'s trusts of the token\'s issuer would match (sent as client_id)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l ca-cert -d 'Also trust this CA certificate (PEM; the file may hold several) when checking the server\'s certificate, e.g. a private CA; the system\'s roots stay trusted' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -s X -l method -d 'The HTTP method [default: GET, or POST with --data]' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -s H -l header -d 'A request header, \'Name: value\' (repeatable)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -s d -l data -d 'The request body; @FILE reads a file, @- standard input' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l token -d 'Send this bearer token instead of one got with a key file: a personal access token (`tapat_…`) or an access token; `-` reads it from standard input. Without it and without a key, TOKENAUTH_TOKEN is used' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -s i -l include -d 'Print the status line and response headers before the body'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -l no-cache -d 'Always fetch a fresh token; neither read nor write the cache'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand request" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand verify" -l ip -d 'Also check that this caller address is inside the key\'s IP ranges' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand verify" -l scope -d 'Require this scope (read or write)' -r -f -a "read\t''
write\t''"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand verify" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand verify" -l json -d 'Print the result as JSON'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand verify" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -l user -d 'Only rows of this user (as the key\'s user or as the subject)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -l since -d 'Only rows newer than this (e.g. 1h, 7d)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -l limit -d 'At most this many rows' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -l failures -d 'Only refused attempts'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -l no-jti -d 'Only issuances from grants without a jti claim: the clients `serve --require-jti` would refuse'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -l summary -d 'Per key or token: issuances, refusals by reason, first and last use, and a bar per day (UTC) over --since [default: 7d]; with --json the numbers'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -l json -d 'Print JSON instead of a table'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -l wide -d 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand usage-log" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -l since -d 'Only rows newer than this (e.g. 1h, 7d)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -l actor -d 'Only changes by this actor: as shown, or its user part (alice for alice@build-host)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -l target -d 'Only changes to this user, trust or setting, or to this key or token: its id or a unique prefix of it, as edit-key takes' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -l action -d 'Only this action (key.issue) or family of actions (key, user, token, trust, settings)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -l limit -d 'At most this many rows' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -l json -d 'Print JSON instead of a table'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -l wide -d 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -f -a "verify" -d 'Check the audit trail\'s hash chain; exit 1 naming the first edited or deleted row'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and __fish_seen_subcommand_from verify" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and __fish_seen_subcommand_from verify" -l json -d 'Print the verdict as JSON'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check the audit trail\'s hash chain; exit 1 naming the first edited or deleted row'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand report" -l fail-on -d 'Exit 1 when findings of these kinds exist (comma-separated): expiring, unused, write-without-ip-range, impersonate, disabled-with-keys' -r -f -a "expiring\t''
unused\t''
write-without-ip-range\t''
impersonate\t''
disabled-with-keys\t''"
complete -c tokenauth -n "__fish_tokenauth_using_subcommand report" -l expiring-within -d 'What counts as expiring soon' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand report" -l unused-for -d 'What counts as unused' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand report" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand report" -l json -d 'Print JSON instead of a table'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand report" -l wide -d 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand report" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and not __fish_seen_subcommand_from copy help" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and not __fish_seen_subcommand_from copy help" -s h -l help -d 'Print help'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and not __fish_seen_subcommand_from copy help" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and not __fish_seen_subcommand_from copy help" -f -a "copy" -d 'Copy a whole store to another: SQLite to PostgreSQL, back, or between two of a kind'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and not __fish_seen_subcommand_from copy help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and __fish_seen_subcommand_from copy" -l from -d 'The store to copy: an SQLite file or a postgres:// URL' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and __fish_seen_subcommand_from copy" -l to -d 'The store to copy into (created when missing)' -r
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and __fish_seen_subcommand_from copy" -l db -d 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]' -r -F
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and __fish_seen_subcommand_from copy" -l force -d 'Replace what the target holds'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and __fish_seen_subcommand_from copy" -l json -d 'Print the result as JSON'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and __fish_seen_subcommand_from copy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and __fish_seen_subcommand_from copy" -s V -l version -d 'Print version'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and __fish_seen_subcommand_from help" -f -a "copy" -d 'Copy a whole store to another: SQLite to PostgreSQL, back, or between two of a kind'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand store; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "init" -d 'Create the store and record the token URI that key files will carry'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "user" -d 'Manage users: the accounts service keys act for'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "issue-key" -d 'Issue a service key for a user and write its key file'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "keygen" -d 'Make a key pair where the client runs: the private key never leaves this machine'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "list-keys" -d 'List service keys'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "edit-key" -d 'Change a key\'s title, IP ranges or allowed browser origins'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "revoke-key" -d 'Revoke a service key'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "rotate-secret" -d 'Replace a user\'s signing secret: every access token of that user stops working, and so do the tokens its keys issued for other users (impersonation)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "token" -d 'Manage personal access tokens: static bearer tokens for callers that cannot sign grants'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "trust" -d 'Manage trust relationships: CI jobs get access tokens with their platform\'s own ID token, and no stored secret (keyless CI)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "sign-grant" -d 'Sign a JWT grant (RFC 7523) with a key file and print it'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "serve" -d 'Run the token endpoint (RFC 7523 jwt-bearer) and the token checks for resource servers'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "get-token" -d 'Get an access token with a key file or a CI job\'s ID token, from the cache when it is still good'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "request" -d 'Send an HTTP request with a bearer token from a key file (or a CI job\'s ID token, with --oidc), or with a token as it is'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "verify" -d 'Check an access token or a personal access token against the store, without a server'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "usage-log" -d 'Show the usage log: every token issuance and refused attempt, newest first'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "audit" -d 'Show who changed what: the admin audit trail, newest first'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "report" -d 'Report keys and personal access tokens that need attention'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "store" -d 'Work on whole stores'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and not __fish_seen_subcommand_from init user issue-key keygen list-keys edit-key revoke-key rotate-secret token trust sign-grant serve get-token request verify usage-log audit report store help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "add" -d 'Create a user with a fresh random secret'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "list" -d 'List users, their permissions and state'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "remove" -d 'Remove a user that has no active keys'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "grant" -d 'Give a user a permission'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "revoke" -d 'Take a permission away from a user'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "disable" -d 'Disable a user: grants are refused and its tokens stop working at once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "enable" -d 'Enable a disabled user again'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "create" -d 'Create a personal access token and print it, this once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "list" -d 'List personal access tokens, never the tokens themselves'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "edit" -d 'Change a token\'s description, scope, IP ranges or allowed origins'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "revoke" -d 'Revoke a personal access token: it stops working at once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from trust" -f -a "add" -d 'Trust an issuer\'s ID tokens that have the given claims'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from trust" -f -a "list" -d 'List trust relationships'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from trust" -f -a "show" -d 'Show every field of a trust relationship'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from trust" -f -a "edit" -d 'Change a trust relationship\'s audience, claims, users, scope, limits or keys'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from trust" -f -a "remove" -d 'Remove a trust relationship: the access tokens it got stop working at once'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "verify" -d 'Check the audit trail\'s hash chain; exit 1 naming the first edited or deleted row'
complete -c tokenauth -n "__fish_tokenauth_using_subcommand help; and __fish_seen_subcommand_from store" -f -a "copy" -d 'Copy a whole store to another: SQLite to PostgreSQL, back, or between two of a kind'
