
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'tokenauth' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'tokenauth'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'tokenauth' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Run the admin commands (user, issue-key, list-keys, edit-key, revoke-key, rotate-secret, token, trust, audit, usage-log, report) on this server''s admin API (`serve --admin-api`) instead of a local store, with --key or --token as the caller')
            [CompletionResult]::new('-k', '-k', [CompletionResultType]::ParameterName, 'The key file: its path, `-` for standard input, or its JSON itself')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The key file: its path, `-` for standard input, or its JSON itself')
            [CompletionResult]::new('--sub', '--sub', [CompletionResultType]::ParameterName, 'Act as this user instead of the key''s own (needs the impersonate permission)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Scopes to ask for, space-separated (read, write) [default: the key''s scope]')
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Also trust this CA certificate (PEM; the file may hold several) when checking the server''s certificate, e.g. a private CA; the system''s roots stay trusted')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'With --server: a bearer token to call the admin API with (a personal access token or an access token) instead of a key file')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create the store and record the token URI that key files will carry')
            [CompletionResult]::new('user', 'user', [CompletionResultType]::ParameterValue, 'Manage users: the accounts service keys act for')
            [CompletionResult]::new('issue-key', 'issue-key', [CompletionResultType]::ParameterValue, 'Issue a service key for a user and write its key file')
            [CompletionResult]::new('keygen', 'keygen', [CompletionResultType]::ParameterValue, 'Make a key pair where the client runs: the private key never leaves this machine')
            [CompletionResult]::new('list-keys', 'list-keys', [CompletionResultType]::ParameterValue, 'List service keys')
            [CompletionResult]::new('edit-key', 'edit-key', [CompletionResultType]::ParameterValue, 'Change a key''s title, IP ranges or allowed browser origins')
            [CompletionResult]::new('revoke-key', 'revoke-key', [CompletionResultType]::ParameterValue, 'Revoke a service key')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Replace a user''s signing secret: every access token of that user stops working, and so do the tokens its keys issued for other users (impersonation)')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Manage personal access tokens: static bearer tokens for callers that cannot sign grants')
            [CompletionResult]::new('trust', 'trust', [CompletionResultType]::ParameterValue, 'Manage trust relationships: CI jobs get access tokens with their platform''s own ID token, and no stored secret (keyless CI)')
            [CompletionResult]::new('sign-grant', 'sign-grant', [CompletionResultType]::ParameterValue, 'Sign a JWT grant (RFC 7523) with a key file and print it')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the token endpoint (RFC 7523 jwt-bearer) and the token checks for resource servers')
            [CompletionResult]::new('get-token', 'get-token', [CompletionResultType]::ParameterValue, 'Get an access token with a key file or a CI job''s ID token, from the cache when it is still good')
            [CompletionResult]::new('request', 'request', [CompletionResultType]::ParameterValue, 'Send an HTTP request with a bearer token from a key file (or a CI job''s ID token, with --oidc), or with a token as it is')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check an access token or a personal access token against the store, without a server')
            [CompletionResult]::new('usage-log', 'usage-log', [CompletionResultType]::ParameterValue, 'Show the usage log: every token issuance and refused attempt, newest first')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Show who changed what: the admin audit trail, newest first')
            [CompletionResult]::new('report', 'report', [CompletionResultType]::ParameterValue, 'Report keys and personal access tokens that need attention')
            [CompletionResult]::new('store', 'store', [CompletionResultType]::ParameterValue, 'Work on whole stores')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;init' {
            [CompletionResult]::new('--token-uri', '--token-uri', [CompletionResultType]::ParameterName, 'The token endpoint''s URL, written into every key file [default: http://127.0.0.1:8080/token]')
            [CompletionResult]::new('--issuer', '--issuer', [CompletionResultType]::ParameterName, 'The issuer named in access tokens and accepted as a grant audience [default: the token URI without its last path segment]')
            [CompletionResult]::new('--service-documentation', '--service-documentation', [CompletionResultType]::ParameterName, 'A page about this server for client developers, published in the RFC 8414 metadata')
            [CompletionResult]::new('--audit-retention', '--audit-retention', [CompletionResultType]::ParameterName, 'How long admin audit rows are kept (e.g. 400d, 2y); older rows are pruned as new ones are written, and `audit verify` checks from where pruning stopped [default: 1y]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the settings as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;user' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a user with a fresh random secret')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List users, their permissions and state')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a user that has no active keys')
            [CompletionResult]::new('grant', 'grant', [CompletionResultType]::ParameterValue, 'Give a user a permission')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Take a permission away from a user')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Disable a user: grants are refused and its tokens stop working at once')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Enable a disabled user again')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;user;add' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;user;list' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('--wide', '--wide', [CompletionResultType]::ParameterName, 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;user;remove' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;user;grant' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;user;revoke' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;user;disable' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;user;enable' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;user;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a user with a fresh random secret')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List users, their permissions and state')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a user that has no active keys')
            [CompletionResult]::new('grant', 'grant', [CompletionResultType]::ParameterValue, 'Give a user a permission')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Take a permission away from a user')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Disable a user: grants are refused and its tokens stop working at once')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Enable a disabled user again')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;user;help;add' {
            break
        }
        'tokenauth;user;help;list' {
            break
        }
        'tokenauth;user;help;remove' {
            break
        }
        'tokenauth;user;help;grant' {
            break
        }
        'tokenauth;user;help;revoke' {
            break
        }
        'tokenauth;user;help;disable' {
            break
        }
        'tokenauth;user;help;enable' {
            break
        }
        'tokenauth;user;help;help' {
            break
        }
        'tokenauth;issue-key' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user the key acts for (created if absent)')
            [CompletionResult]::new('--title', '--title', [CompletionResultType]::ParameterName, 'A note saying what the key is for')
            [CompletionResult]::new('--ip-range', '--ip-range', [CompletionResultType]::ParameterName, 'Addresses allowed to use the key: IPs or CIDR networks, comma-separated (e.g. "192.168.1.1, 10.0.0.0/8, 2001:db8::/32") [default: anywhere]')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'The most the key''s tokens may do; `write` implies `read`')
            [CompletionResult]::new('--expires', '--expires', [CompletionResultType]::ParameterName, 'When the key stops working: a duration from now (90d, 12h) or a date (2027-01-31) [default: never]')
            [CompletionResult]::new('--origin', '--origin', [CompletionResultType]::ParameterName, 'A browser origin (scheme://host[:port]) whose pages may use the key''s tokens from another site (repeatable) [default: none]')
            [CompletionResult]::new('--alg', '--alg', [CompletionResultType]::ParameterName, 'The signing algorithm: RS256 (RSA; what ftw.tokenauth clients sign with), ES256 (P-256) or EdDSA (Ed25519). The key accepts grants of this algorithm only [default: RS256, or that of --public-key]')
            [CompletionResult]::new('--bits', '--bits', [CompletionResultType]::ParameterName, 'RSA key size')
            [CompletionResult]::new('--public-key', '--public-key', [CompletionResultType]::ParameterName, 'Register this public key instead of generating a pair: a PEM public key, a JWK, or a JWKS holding one key (`-` reads standard input). The private key stays with the client')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'The key file''s layout: tokenauth''s, or a Google service-account file')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Where to write the key file; `-` prints it to stdout [default: ./<user>-<short key id>.json]')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Where to write the key file; `-` prints it to stdout [default: ./<user>-<short key id>.json]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--pkcs8', '--pkcs8', [CompletionResultType]::ParameterName, 'Write an RSA private key as PKCS#8 (BEGIN PRIVATE KEY), which more libraries read (Node''s jose, Java), rather than PKCS#1 (BEGIN RSA PRIVATE KEY), which ftw.tokenauth clients read. ES256 and EdDSA keys, and --format google files, are always PKCS#8')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the key''s metadata as JSON (not with --out -)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;keygen' {
            [CompletionResult]::new('--alg', '--alg', [CompletionResultType]::ParameterName, 'The algorithm: RS256 (RSA), ES256 (P-256) or EdDSA (Ed25519)')
            [CompletionResult]::new('--bits', '--bits', [CompletionResultType]::ParameterName, 'RSA key size, with --alg RS256')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Where to write the private key')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Where to write the private key')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the public key, its key id and JWK as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;list-keys' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only this user''s keys')
            [CompletionResult]::new('--expiring-within', '--expiring-within', [CompletionResultType]::ParameterName, 'Only keys that expire within this long from now (e.g. 30d), and have not yet')
            [CompletionResult]::new('--unused-for', '--unused-for', [CompletionResultType]::ParameterName, 'Only keys unused for at least this long (e.g. 90d); a key never used counts from its issue')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Only keys of this scope')
            [CompletionResult]::new('--state', '--state', [CompletionResultType]::ParameterName, 'Only keys in this state')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Include revoked keys')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('--wide', '--wide', [CompletionResultType]::ParameterName, 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;edit-key' {
            [CompletionResult]::new('--title', '--title', [CompletionResultType]::ParameterName, 'A new title')
            [CompletionResult]::new('--ip-range', '--ip-range', [CompletionResultType]::ParameterName, 'New IP ranges, comma-separated IPs or CIDR networks')
            [CompletionResult]::new('--origin', '--origin', [CompletionResultType]::ParameterName, 'Browser origins whose pages may use the key''s tokens from another site, replacing the current list (repeatable)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--no-ip-range', '--no-ip-range', [CompletionResultType]::ParameterName, 'Remove the IP restriction: the key works from anywhere')
            [CompletionResult]::new('--no-origin', '--no-origin', [CompletionResultType]::ParameterName, 'Remove every allowed origin: only same-site callers and non-browser clients')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;revoke-key' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;rotate-secret' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--all-users', '--all-users', [CompletionResultType]::ParameterName, 'Replace every user''s secret')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;token' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a personal access token and print it, this once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List personal access tokens, never the tokens themselves')
            [CompletionResult]::new('edit', 'edit', [CompletionResultType]::ParameterValue, 'Change a token''s description, scope, IP ranges or allowed origins')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a personal access token: it stops working at once')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;token;create' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user the token acts for (created if absent)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'The most the token may do; `write` implies `read`')
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'What the token is for')
            [CompletionResult]::new('--expires', '--expires', [CompletionResultType]::ParameterName, 'When the token stops working: a duration from now (90d, 12h) or a date (2027-01-31) [default: never]')
            [CompletionResult]::new('--ip-range', '--ip-range', [CompletionResultType]::ParameterName, 'Addresses allowed to use the token: IPs or CIDR networks, comma-separated [default: anywhere]')
            [CompletionResult]::new('--origin', '--origin', [CompletionResultType]::ParameterName, 'A browser origin (scheme://host[:port]) whose pages may use the token from another site (repeatable) [default: none]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the token and its metadata as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;token;list' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only this user''s tokens')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Include revoked tokens')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('--wide', '--wide', [CompletionResultType]::ParameterName, 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;token;edit' {
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'A new description')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'A new scope')
            [CompletionResult]::new('--ip-range', '--ip-range', [CompletionResultType]::ParameterName, 'New IP ranges, comma-separated IPs or CIDR networks')
            [CompletionResult]::new('--origin', '--origin', [CompletionResultType]::ParameterName, 'Browser origins whose pages may use the token from another site, replacing the current list (repeatable)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--no-ip-range', '--no-ip-range', [CompletionResultType]::ParameterName, 'Remove the IP restriction: the token works from anywhere')
            [CompletionResult]::new('--no-origin', '--no-origin', [CompletionResultType]::ParameterName, 'Remove every allowed origin')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;token;revoke' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;token;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a personal access token and print it, this once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List personal access tokens, never the tokens themselves')
            [CompletionResult]::new('edit', 'edit', [CompletionResultType]::ParameterValue, 'Change a token''s description, scope, IP ranges or allowed origins')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a personal access token: it stops working at once')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;token;help;create' {
            break
        }
        'tokenauth;token;help;list' {
            break
        }
        'tokenauth;token;help;edit' {
            break
        }
        'tokenauth;token;help;revoke' {
            break
        }
        'tokenauth;token;help;help' {
            break
        }
        'tokenauth;trust' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Trust an issuer''s ID tokens that have the given claims')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List trust relationships')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show every field of a trust relationship')
            [CompletionResult]::new('edit', 'edit', [CompletionResultType]::ParameterValue, 'Change a trust relationship''s audience, claims, users, scope, limits or keys')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a trust relationship: the access tokens it got stop working at once')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;trust;add' {
            [CompletionResult]::new('--issuer', '--issuer', [CompletionResultType]::ParameterName, 'The issuer: exactly the `iss` of its ID tokens (https; http only on a loopback host)')
            [CompletionResult]::new('--audience', '--audience', [CompletionResultType]::ParameterName, 'The `aud` the ID tokens must carry (what the job asks its platform for)')
            [CompletionResult]::new('--claim', '--claim', [CompletionResultType]::ParameterName, 'A claim the ID token must have, with this value: exact, except that `*` matches any run of characters (repeatable; all must match)')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user the access tokens are for; with --user-claim, a user the claim may name (repeatable)')
            [CompletionResult]::new('--user-claim', '--user-claim', [CompletionResultType]::ParameterName, 'Take the user from this claim of the ID token, limited to the --user names')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'The most the access tokens may do; `write` implies `read`')
            [CompletionResult]::new('--ip-range', '--ip-range', [CompletionResultType]::ParameterName, 'Addresses allowed to use the trust: IPs or CIDR networks, comma-separated [default: anywhere]')
            [CompletionResult]::new('--origin', '--origin', [CompletionResultType]::ParameterName, 'A browser origin (scheme://host[:port]) whose pages may use the access tokens from another site (repeatable) [default: none]')
            [CompletionResult]::new('--expires', '--expires', [CompletionResultType]::ParameterName, 'When the trust stops working: a duration from now (90d, 12h) or a date (2027-01-31) [default: never]')
            [CompletionResult]::new('--max-age', '--max-age', [CompletionResultType]::ParameterName, 'How old (since its `iat`) an ID token may be when exchanged, 1s to 24h [default: 1h]')
            [CompletionResult]::new('--jwks-uri', '--jwks-uri', [CompletionResultType]::ParameterName, 'Fetch the issuer''s keys from this URL instead of the one its discovery document names')
            [CompletionResult]::new('--jwks-file', '--jwks-file', [CompletionResultType]::ParameterName, 'The issuer''s keys from this JWKS file: nothing is fetched (for an issuer the server cannot reach)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the trust as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;trust;list' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('--wide', '--wide', [CompletionResultType]::ParameterName, 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;trust;show' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;trust;edit' {
            [CompletionResult]::new('--issuer', '--issuer', [CompletionResultType]::ParameterName, 'Refused: a trust''s issuer cannot be changed; remove the trust and add it again')
            [CompletionResult]::new('--audience', '--audience', [CompletionResultType]::ParameterName, 'A new audience')
            [CompletionResult]::new('--claim', '--claim', [CompletionResultType]::ParameterName, 'Bind a claim, or change the value of one already bound (repeatable)')
            [CompletionResult]::new('--remove-claim', '--remove-claim', [CompletionResultType]::ParameterName, 'Stop binding this claim (repeatable)')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The users, replacing the current list (repeatable)')
            [CompletionResult]::new('--user-claim', '--user-claim', [CompletionResultType]::ParameterName, 'Take the user from this claim of the ID token, limited to the trust''s users')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'A new scope')
            [CompletionResult]::new('--ip-range', '--ip-range', [CompletionResultType]::ParameterName, 'New IP ranges, comma-separated IPs or CIDR networks')
            [CompletionResult]::new('--origin', '--origin', [CompletionResultType]::ParameterName, 'Browser origins whose pages may use the access tokens from another site, replacing the current list (repeatable)')
            [CompletionResult]::new('--max-age', '--max-age', [CompletionResultType]::ParameterName, 'A new maximum age of ID tokens, 1s to 24h')
            [CompletionResult]::new('--expires', '--expires', [CompletionResultType]::ParameterName, 'A new expiry: a duration from now (90d) or a date (2027-01-31)')
            [CompletionResult]::new('--jwks-uri', '--jwks-uri', [CompletionResultType]::ParameterName, 'Fetch the issuer''s keys from this URL (instead of a JWKS file or discovery)')
            [CompletionResult]::new('--jwks-file', '--jwks-file', [CompletionResultType]::ParameterName, 'The issuer''s keys from this JWKS file from now on: nothing is fetched')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--no-user-claim', '--no-user-claim', [CompletionResultType]::ParameterName, 'Stop taking the user from a claim: the tokens are for the trust''s one user')
            [CompletionResult]::new('--no-ip-range', '--no-ip-range', [CompletionResultType]::ParameterName, 'Remove the IP restriction: the trust works from anywhere')
            [CompletionResult]::new('--no-origin', '--no-origin', [CompletionResultType]::ParameterName, 'Remove every allowed origin')
            [CompletionResult]::new('--no-expiry', '--no-expiry', [CompletionResultType]::ParameterName, 'Remove the expiry: the trust works until removed')
            [CompletionResult]::new('--discover', '--discover', [CompletionResultType]::ParameterName, 'Find the issuer''s keys through its discovery document again (drops --jwks-uri and the JWKS file)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the changed trust as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;trust;remove' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the removed trust as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;trust;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Trust an issuer''s ID tokens that have the given claims')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List trust relationships')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show every field of a trust relationship')
            [CompletionResult]::new('edit', 'edit', [CompletionResultType]::ParameterValue, 'Change a trust relationship''s audience, claims, users, scope, limits or keys')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a trust relationship: the access tokens it got stop working at once')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;trust;help;add' {
            break
        }
        'tokenauth;trust;help;list' {
            break
        }
        'tokenauth;trust;help;show' {
            break
        }
        'tokenauth;trust;help;edit' {
            break
        }
        'tokenauth;trust;help;remove' {
            break
        }
        'tokenauth;trust;help;help' {
            break
        }
        'tokenauth;sign-grant' {
            [CompletionResult]::new('-k', '-k', [CompletionResultType]::ParameterName, 'The key file: its path, `-` for standard input, or its JSON itself')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The key file: its path, `-` for standard input, or its JSON itself')
            [CompletionResult]::new('--sub', '--sub', [CompletionResultType]::ParameterName, 'Act as this user instead of the key''s own (needs the impersonate permission)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Scopes to ask for, space-separated (read, write) [default: the key''s scope]')
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)')
            [CompletionResult]::new('--lifetime', '--lifetime', [CompletionResultType]::ParameterName, 'Seconds until the grant expires (at most 86400)')
            [CompletionResult]::new('--aud', '--aud', [CompletionResultType]::ParameterName, 'The audience [default: the key file''s token_uri]')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Print this many grants, one per line, each with its own jti (to hand a batch of single-use grants to a job, or to load-test the token endpoint)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--no-jti', '--no-jti', [CompletionResultType]::ParameterName, 'Leave out the jti claim (for servers that reject jti). tokenauth still takes such a grant only once, by its signature, and `serve --require-jti` refuses it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;serve' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'The address to listen on: HOST:PORT (port 0 picks a free port), or unix:PATH for a Unix socket that only a local proxy can reach; X-Forwarded-For from the socket is believed')
            [CompletionResult]::new('--socket-mode', '--socket-mode', [CompletionResultType]::ParameterName, 'The Unix socket''s file mode (octal), with --listen unix:PATH: who may connect [default: 0660]')
            [CompletionResult]::new('--token-lifetime', '--token-lifetime', [CompletionResultType]::ParameterName, 'Access-token lifetime in seconds')
            [CompletionResult]::new('--usage-retention', '--usage-retention', [CompletionResultType]::ParameterName, 'How long usage-log rows are kept (each key''s newest row is always kept)')
            [CompletionResult]::new('--feed-retention', '--feed-retention', [CompletionResultType]::ParameterName, 'How long the store''s change feed keeps entries: a server that could not follow it for longer (stopped, cut off from the database) loads everything again when it can')
            [CompletionResult]::new('--oidc-max-stale', '--oidc-max-stale', [CompletionResultType]::ParameterName, 'How long a trust''s issuer keys stay in use after they could last be fetched: past that, while the issuer stays unreachable, its ID tokens are refused (fail closed)')
            [CompletionResult]::new('--trusted-proxy', '--trusted-proxy', [CompletionResultType]::ParameterName, 'A proxy whose X-Forwarded-For is believed (an IP or CIDR network; repeatable)')
            [CompletionResult]::new('--public-origin', '--public-origin', [CompletionResultType]::ParameterName, 'This site''s own origin (repeatable): browser requests from it are same-site, and keys need not list it [default: the issuer''s origin]')
            [CompletionResult]::new('--header-timeout', '--header-timeout', [CompletionResultType]::ParameterName, 'Close a connection whose request head is not complete this long after its first byte')
            [CompletionResult]::new('--body-timeout', '--body-timeout', [CompletionResultType]::ParameterName, 'Answer 408 when a request body is not complete this long after its head')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Close a kept-alive connection after this long without a request (longer than a proxy''s upstream keep-alive, so that the proxy closes first)')
            [CompletionResult]::new('--request-timeout', '--request-timeout', [CompletionResultType]::ParameterName, 'Answer 503 when a request is not answered this long after its head')
            [CompletionResult]::new('--rate-limit', '--rate-limit', [CompletionResultType]::ParameterName, 'Rate limits on /token, /revoke, /introspect and the admin API (repeatable): a token bucket per client address (IPv6: per /64) and one per key or personal access token (once the caller proved it holds it). Over a limit the answer is 429 with Retry-After. Give `address=COUNT/UNIT[:BURST]` or `key=COUNT/UNIT[:BURST]` (UNIT: s, min or h; BURST defaults to ten times COUNT), `address=off`, `key=off`, `off` for none, or `default`. [default: address=100/s:1000, key=50/s:500]')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Connections open at once; further ones wait in the listen backlog until one closes')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'Serve HTTPS with this certificate chain (PEM, server certificate first); needs --tls-key. SIGHUP reloads both files without dropping connections')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)')
            [CompletionResult]::new('--metrics-listen', '--metrics-listen', [CompletionResultType]::ParameterName, 'Serve GET /metrics on this address (plain HTTP) instead of on --listen, e.g. to keep it off a public interface')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log lines as text or as JSON objects (one per line)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--require-jti', '--require-jti', [CompletionResultType]::ParameterName, 'Refuse grants without a jti claim (without this flag, such a grant is good for one exchange: an exact copy is refused until it expires)')
            [CompletionResult]::new('--admin-api', '--admin-api', [CompletionResultType]::ParameterName, 'Serve the remote admin API under /admin/v1 (JSON), for callers whose user holds the admin permission (write scope for changes) or, for their own keys and tokens, manage-own-keys; the CLI drives it with `tokenauth --server URL`')
            [CompletionResult]::new('--no-access-log', '--no-access-log', [CompletionResultType]::ParameterName, 'Do not log a line per request')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;get-token' {
            [CompletionResult]::new('-k', '-k', [CompletionResultType]::ParameterName, 'The key file: its path, `-` for standard input, or its JSON itself')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The key file: its path, `-` for standard input, or its JSON itself')
            [CompletionResult]::new('--sub', '--sub', [CompletionResultType]::ParameterName, 'Act as this user instead of the key''s own (needs the impersonate permission)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Scopes to ask for, space-separated (read, write) [default: the key''s scope]')
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)')
            [CompletionResult]::new('--oidc', '--oidc', [CompletionResultType]::ParameterName, 'Get the token with the CI job''s OpenID Connect ID token instead of a key file: github, gitlab, file:PATH or env:VAR')
            [CompletionResult]::new('--token-uri', '--token-uri', [CompletionResultType]::ParameterName, 'With --oidc: the server''s token endpoint (a key file names its own), e.g. https://auth.example.com/token; also from TOKENAUTH_TOKEN_URI')
            [CompletionResult]::new('--audience', '--audience', [CompletionResultType]::ParameterName, 'With --oidc github: the audience to ask GitHub for, which must be the trust''s [default: the server''s issuer, the token URI without its last path segment]')
            [CompletionResult]::new('--trust', '--trust', [CompletionResultType]::ParameterName, 'With --oidc: the trust to use when several of the server''s trusts of the token''s issuer would match (sent as client_id)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Also trust this CA certificate (PEM; the file may hold several) when checking the server''s certificate, e.g. a private CA; the system''s roots stay trusted')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'What to print')
            [CompletionResult]::new('--min-valid', '--min-valid', [CompletionResultType]::ParameterName, 'Reuse a cached token only while it has more than this many seconds left')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--no-cache', '--no-cache', [CompletionResultType]::ParameterName, 'Always ask the server; neither read nor write the cache')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;request' {
            [CompletionResult]::new('-k', '-k', [CompletionResultType]::ParameterName, 'The key file: its path, `-` for standard input, or its JSON itself')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The key file: its path, `-` for standard input, or its JSON itself')
            [CompletionResult]::new('--sub', '--sub', [CompletionResultType]::ParameterName, 'Act as this user instead of the key''s own (needs the impersonate permission)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Scopes to ask for, space-separated (read, write) [default: the key''s scope]')
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)')
            [CompletionResult]::new('--oidc', '--oidc', [CompletionResultType]::ParameterName, 'Get the token with the CI job''s OpenID Connect ID token instead of a key file: github, gitlab, file:PATH or env:VAR')
            [CompletionResult]::new('--token-uri', '--token-uri', [CompletionResultType]::ParameterName, 'With --oidc: the server''s token endpoint (a key file names its own), e.g. https://auth.example.com/token; also from TOKENAUTH_TOKEN_URI')
            [CompletionResult]::new('--audience', '--audience', [CompletionResultType]::ParameterName, 'With --oidc github: the audience to ask GitHub for, which must be the trust''s [default: the server''s issuer, the token URI without its last path segment]')
            [CompletionResult]::new('--trust', '--trust', [CompletionResultType]::ParameterName, 'With --oidc: the trust to use when several of the server''s trusts of the token''s issuer would match (sent as client_id)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Also trust this CA certificate (PEM; the file may hold several) when checking the server''s certificate, e.g. a private CA; the system''s roots stay trusted')
            [CompletionResult]::new('-X', '-X ', [CompletionResultType]::ParameterName, 'The HTTP method [default: GET, or POST with --data]')
            [CompletionResult]::new('--method', '--method', [CompletionResultType]::ParameterName, 'The HTTP method [default: GET, or POST with --data]')
            [CompletionResult]::new('-H', '-H ', [CompletionResultType]::ParameterName, 'A request header, ''Name: value'' (repeatable)')
            [CompletionResult]::new('--header', '--header', [CompletionResultType]::ParameterName, 'A request header, ''Name: value'' (repeatable)')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'The request body; @FILE reads a file, @- standard input')
            [CompletionResult]::new('--data', '--data', [CompletionResultType]::ParameterName, 'The request body; @FILE reads a file, @- standard input')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Send this bearer token instead of one got with a key file: a personal access token (`tapat_…`) or an access token; `-` reads it from standard input. Without it and without a key, TOKENAUTH_TOKEN is used')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-i', '-i', [CompletionResultType]::ParameterName, 'Print the status line and response headers before the body')
            [CompletionResult]::new('--include', '--include', [CompletionResultType]::ParameterName, 'Print the status line and response headers before the body')
            [CompletionResult]::new('--no-cache', '--no-cache', [CompletionResultType]::ParameterName, 'Always fetch a fresh token; neither read nor write the cache')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;verify' {
            [CompletionResult]::new('--ip', '--ip', [CompletionResultType]::ParameterName, 'Also check that this caller address is inside the key''s IP ranges')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Require this scope (read or write)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the result as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;usage-log' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only rows of this user (as the key''s user or as the subject)')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only rows newer than this (e.g. 1h, 7d)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many rows')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--failures', '--failures', [CompletionResultType]::ParameterName, 'Only refused attempts')
            [CompletionResult]::new('--no-jti', '--no-jti', [CompletionResultType]::ParameterName, 'Only issuances from grants without a jti claim: the clients `serve --require-jti` would refuse')
            [CompletionResult]::new('--summary', '--summary', [CompletionResultType]::ParameterName, 'Per key or token: issuances, refusals by reason, first and last use, and a bar per day (UTC) over --since [default: 7d]; with --json the numbers')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('--wide', '--wide', [CompletionResultType]::ParameterName, 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;audit' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only rows newer than this (e.g. 1h, 7d)')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Only changes by this actor: as shown, or its user part (alice for alice@build-host)')
            [CompletionResult]::new('--target', '--target', [CompletionResultType]::ParameterName, 'Only changes to this user, trust or setting, or to this key or token: its id or a unique prefix of it, as edit-key takes')
            [CompletionResult]::new('--action', '--action', [CompletionResultType]::ParameterName, 'Only this action (key.issue) or family of actions (key, user, token, trust, settings)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many rows')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('--wide', '--wide', [CompletionResultType]::ParameterName, 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check the audit trail''s hash chain; exit 1 naming the first edited or deleted row')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;audit;verify' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the verdict as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;audit;help' {
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check the audit trail''s hash chain; exit 1 naming the first edited or deleted row')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;audit;help;verify' {
            break
        }
        'tokenauth;audit;help;help' {
            break
        }
        'tokenauth;report' {
            [CompletionResult]::new('--fail-on', '--fail-on', [CompletionResultType]::ParameterName, 'Exit 1 when findings of these kinds exist (comma-separated): expiring, unused, write-without-ip-range, impersonate, disabled-with-keys')
            [CompletionResult]::new('--expiring-within', '--expiring-within', [CompletionResultType]::ParameterName, 'What counts as expiring soon')
            [CompletionResult]::new('--unused-for', '--unused-for', [CompletionResultType]::ParameterName, 'What counts as unused')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('--wide', '--wide', [CompletionResultType]::ParameterName, 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;store' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('copy', 'copy', [CompletionResultType]::ParameterValue, 'Copy a whole store to another: SQLite to PostgreSQL, back, or between two of a kind')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;store;copy' {
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'The store to copy: an SQLite file or a postgres:// URL')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The store to copy into (created when missing)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Replace what the target holds')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the result as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tokenauth;store;help' {
            [CompletionResult]::new('copy', 'copy', [CompletionResultType]::ParameterValue, 'Copy a whole store to another: SQLite to PostgreSQL, back, or between two of a kind')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;store;help;copy' {
            break
        }
        'tokenauth;store;help;help' {
            break
        }
        'tokenauth;help' {
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create the store and record the token URI that key files will carry')
            [CompletionResult]::new('user', 'user', [CompletionResultType]::ParameterValue, 'Manage users: the accounts service keys act for')
            [CompletionResult]::new('issue-key', 'issue-key', [CompletionResultType]::ParameterValue, 'Issue a service key for a user and write its key file')
            [CompletionResult]::new('keygen', 'keygen', [CompletionResultType]::ParameterValue, 'Make a key pair where the client runs: the private key never leaves this machine')
            [CompletionResult]::new('list-keys', 'list-keys', [CompletionResultType]::ParameterValue, 'List service keys')
            [CompletionResult]::new('edit-key', 'edit-key', [CompletionResultType]::ParameterValue, 'Change a key''s title, IP ranges or allowed browser origins')
            [CompletionResult]::new('revoke-key', 'revoke-key', [CompletionResultType]::ParameterValue, 'Revoke a service key')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Replace a user''s signing secret: every access token of that user stops working, and so do the tokens its keys issued for other users (impersonation)')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Manage personal access tokens: static bearer tokens for callers that cannot sign grants')
            [CompletionResult]::new('trust', 'trust', [CompletionResultType]::ParameterValue, 'Manage trust relationships: CI jobs get access tokens with their platform''s own ID token, and no stored secret (keyless CI)')
            [CompletionResult]::new('sign-grant', 'sign-grant', [CompletionResultType]::ParameterValue, 'Sign a JWT grant (RFC 7523) with a key file and print it')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the token endpoint (RFC 7523 jwt-bearer) and the token checks for resource servers')
            [CompletionResult]::new('get-token', 'get-token', [CompletionResultType]::ParameterValue, 'Get an access token with a key file or a CI job''s ID token, from the cache when it is still good')
            [CompletionResult]::new('request', 'request', [CompletionResultType]::ParameterValue, 'Send an HTTP request with a bearer token from a key file (or a CI job''s ID token, with --oidc), or with a token as it is')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check an access token or a personal access token against the store, without a server')
            [CompletionResult]::new('usage-log', 'usage-log', [CompletionResultType]::ParameterValue, 'Show the usage log: every token issuance and refused attempt, newest first')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Show who changed what: the admin audit trail, newest first')
            [CompletionResult]::new('report', 'report', [CompletionResultType]::ParameterValue, 'Report keys and personal access tokens that need attention')
            [CompletionResult]::new('store', 'store', [CompletionResultType]::ParameterValue, 'Work on whole stores')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tokenauth;help;init' {
            break
        }
        'tokenauth;help;user' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a user with a fresh random secret')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List users, their permissions and state')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a user that has no active keys')
            [CompletionResult]::new('grant', 'grant', [CompletionResultType]::ParameterValue, 'Give a user a permission')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Take a permission away from a user')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Disable a user: grants are refused and its tokens stop working at once')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Enable a disabled user again')
            break
        }
        'tokenauth;help;user;add' {
            break
        }
        'tokenauth;help;user;list' {
            break
        }
        'tokenauth;help;user;remove' {
            break
        }
        'tokenauth;help;user;grant' {
            break
        }
        'tokenauth;help;user;revoke' {
            break
        }
        'tokenauth;help;user;disable' {
            break
        }
        'tokenauth;help;user;enable' {
            break
        }
        'tokenauth;help;issue-key' {
            break
        }
        'tokenauth;help;keygen' {
            break
        }
        'tokenauth;help;list-keys' {
            break
        }
        'tokenauth;help;edit-key' {
            break
        }
        'tokenauth;help;revoke-key' {
            break
        }
        'tokenauth;help;rotate-secret' {
            break
        }
        'tokenauth;help;token' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a personal access token and print it, this once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List personal access tokens, never the tokens themselves')
            [CompletionResult]::new('edit', 'edit', [CompletionResultType]::ParameterValue, 'Change a token''s description, scope, IP ranges or allowed origins')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a personal access token: it stops working at once')
            break
        }
        'tokenauth;help;token;create' {
            break
        }
        'tokenauth;help;token;list' {
            break
        }
        'tokenauth;help;token;edit' {
            break
        }
        'tokenauth;help;token;revoke' {
            break
        }
        'tokenauth;help;trust' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Trust an issuer''s ID tokens that have the given claims')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List trust relationships')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show every field of a trust relationship')
            [CompletionResult]::new('edit', 'edit', [CompletionResultType]::ParameterValue, 'Change a trust relationship''s audience, claims, users, scope, limits or keys')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a trust relationship: the access tokens it got stop working at once')
            break
        }
        'tokenauth;help;trust;add' {
            break
        }
        'tokenauth;help;trust;list' {
            break
        }
        'tokenauth;help;trust;show' {
            break
        }
        'tokenauth;help;trust;edit' {
            break
        }
        'tokenauth;help;trust;remove' {
            break
        }
        'tokenauth;help;sign-grant' {
            break
        }
        'tokenauth;help;serve' {
            break
        }
        'tokenauth;help;get-token' {
            break
        }
        'tokenauth;help;request' {
            break
        }
        'tokenauth;help;verify' {
            break
        }
        'tokenauth;help;usage-log' {
            break
        }
        'tokenauth;help;audit' {
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check the audit trail''s hash chain; exit 1 naming the first edited or deleted row')
            break
        }
        'tokenauth;help;audit;verify' {
            break
        }
        'tokenauth;help;report' {
            break
        }
        'tokenauth;help;store' {
            [CompletionResult]::new('copy', 'copy', [CompletionResultType]::ParameterValue, 'Copy a whole store to another: SQLite to PostgreSQL, back, or between two of a kind')
            break
        }
        'tokenauth;help;store;copy' {
            break
        }
        'tokenauth;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
