
use builtin;
use str;

set edit:completion:arg-completer[tokenauth] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'tokenauth'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'tokenauth'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --server 'Run the admin commands (user, issue-key, list-keys, edit-key, revoke-key, rotate-secret, token, trust, audit, usage-log, report) on this server''s admin API (`serve --admin-api`) instead of a local store, with --key or --token as the caller'
            cand -k 'The key file: its path, `-` for standard input, or its JSON itself'
            cand --key 'The key file: its path, `-` for standard input, or its JSON itself'
            cand --sub 'Act as this user instead of the key''s own (needs the impersonate permission)'
            cand --scope 'Scopes to ask for, space-separated (read, write) [default: the key''s scope]'
            cand --private-key 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)'
            cand --ca-cert 'Also trust this CA certificate (PEM; the file may hold several) when checking the server''s certificate, e.g. a private CA; the system''s roots stay trusted'
            cand --token 'With --server: a bearer token to call the admin API with (a personal access token or an access token) instead of a key file'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand init 'Create the store and record the token URI that key files will carry'
            cand user 'Manage users: the accounts service keys act for'
            cand issue-key 'Issue a service key for a user and write its key file'
            cand keygen 'Make a key pair where the client runs: the private key never leaves this machine'
            cand list-keys 'List service keys'
            cand edit-key 'Change a key''s title, IP ranges or allowed browser origins'
            cand revoke-key 'Revoke a service key'
            cand rotate-secret 'Replace a user''s signing secret: every access token of that user stops working, and so do the tokens its keys issued for other users (impersonation)'
            cand token 'Manage personal access tokens: static bearer tokens for callers that cannot sign grants'
            cand trust 'Manage trust relationships: CI jobs get access tokens with their platform''s own ID token, and no stored secret (keyless CI)'
            cand sign-grant 'Sign a JWT grant (RFC 7523) with a key file and print it'
            cand serve 'Run the token endpoint (RFC 7523 jwt-bearer) and the token checks for resource servers'
            cand get-token 'Get an access token with a key file or a CI job''s ID token, from the cache when it is still good'
            cand request 'Send an HTTP request with a bearer token from a key file (or a CI job''s ID token, with --oidc), or with a token as it is'
            cand verify 'Check an access token or a personal access token against the store, without a server'
            cand usage-log 'Show the usage log: every token issuance and refused attempt, newest first'
            cand audit 'Show who changed what: the admin audit trail, newest first'
            cand report 'Report keys and personal access tokens that need attention'
            cand store 'Work on whole stores'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;init'= {
            cand --token-uri 'The token endpoint''s URL, written into every key file [default: http://127.0.0.1:8080/token]'
            cand --issuer 'The issuer named in access tokens and accepted as a grant audience [default: the token URI without its last path segment]'
            cand --service-documentation 'A page about this server for client developers, published in the RFC 8414 metadata'
            cand --audit-retention 'How long admin audit rows are kept (e.g. 400d, 2y); older rows are pruned as new ones are written, and `audit verify` checks from where pruning stopped [default: 1y]'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print the settings as JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;user'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Create a user with a fresh random secret'
            cand list 'List users, their permissions and state'
            cand remove 'Remove a user that has no active keys'
            cand grant 'Give a user a permission'
            cand revoke 'Take a permission away from a user'
            cand disable 'Disable a user: grants are refused and its tokens stop working at once'
            cand enable 'Enable a disabled user again'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;user;add'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;user;list'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print JSON instead of a table'
            cand --wide 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;user;remove'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -y 'Do not ask for confirmation'
            cand --yes 'Do not ask for confirmation'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;user;grant'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;user;revoke'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;user;disable'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;user;enable'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;user;help'= {
            cand add 'Create a user with a fresh random secret'
            cand list 'List users, their permissions and state'
            cand remove 'Remove a user that has no active keys'
            cand grant 'Give a user a permission'
            cand revoke 'Take a permission away from a user'
            cand disable 'Disable a user: grants are refused and its tokens stop working at once'
            cand enable 'Enable a disabled user again'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;user;help;add'= {
        }
        &'tokenauth;user;help;list'= {
        }
        &'tokenauth;user;help;remove'= {
        }
        &'tokenauth;user;help;grant'= {
        }
        &'tokenauth;user;help;revoke'= {
        }
        &'tokenauth;user;help;disable'= {
        }
        &'tokenauth;user;help;enable'= {
        }
        &'tokenauth;user;help;help'= {
        }
        &'tokenauth;issue-key'= {
            cand --user 'The user the key acts for (created if absent)'
            cand --title 'A note saying what the key is for'
            cand --ip-range 'Addresses allowed to use the key: IPs or CIDR networks, comma-separated (e.g. "192.168.1.1, 10.0.0.0/8, 2001:db8::/32") [default: anywhere]'
            cand --scope 'The most the key''s tokens may do; `write` implies `read`'
            cand --expires 'When the key stops working: a duration from now (90d, 12h) or a date (2027-01-31) [default: never]'
            cand --origin 'A browser origin (scheme://host[:port]) whose pages may use the key''s tokens from another site (repeatable) [default: none]'
            cand --alg 'The signing algorithm: RS256 (RSA; what ftw.tokenauth clients sign with), ES256 (P-256) or EdDSA (Ed25519). The key accepts grants of this algorithm only [default: RS256, or that of --public-key]'
            cand --bits 'RSA key size'
            cand --public-key 'Register this public key instead of generating a pair: a PEM public key, a JWK, or a JWKS holding one key (`-` reads standard input). The private key stays with the client'
            cand --format 'The key file''s layout: tokenauth''s, or a Google service-account file'
            cand -o 'Where to write the key file; `-` prints it to stdout [default: ./<user>-<short key id>.json]'
            cand --out 'Where to write the key file; `-` prints it to stdout [default: ./<user>-<short key id>.json]'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --pkcs8 'Write an RSA private key as PKCS#8 (BEGIN PRIVATE KEY), which more libraries read (Node''s jose, Java), rather than PKCS#1 (BEGIN RSA PRIVATE KEY), which ftw.tokenauth clients read. ES256 and EdDSA keys, and --format google files, are always PKCS#8'
            cand --json 'Print the key''s metadata as JSON (not with --out -)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;keygen'= {
            cand --alg 'The algorithm: RS256 (RSA), ES256 (P-256) or EdDSA (Ed25519)'
            cand --bits 'RSA key size, with --alg RS256'
            cand -o 'Where to write the private key'
            cand --out 'Where to write the private key'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print the public key, its key id and JWK as JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;list-keys'= {
            cand --user 'Only this user''s keys'
            cand --expiring-within 'Only keys that expire within this long from now (e.g. 30d), and have not yet'
            cand --unused-for 'Only keys unused for at least this long (e.g. 90d); a key never used counts from its issue'
            cand --scope 'Only keys of this scope'
            cand --state 'Only keys in this state'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --all 'Include revoked keys'
            cand --json 'Print JSON instead of a table'
            cand --wide 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;edit-key'= {
            cand --title 'A new title'
            cand --ip-range 'New IP ranges, comma-separated IPs or CIDR networks'
            cand --origin 'Browser origins whose pages may use the key''s tokens from another site, replacing the current list (repeatable)'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --no-ip-range 'Remove the IP restriction: the key works from anywhere'
            cand --no-origin 'Remove every allowed origin: only same-site callers and non-browser clients'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;revoke-key'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -y 'Do not ask for confirmation'
            cand --yes 'Do not ask for confirmation'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;rotate-secret'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --all-users 'Replace every user''s secret'
            cand -y 'Do not ask for confirmation'
            cand --yes 'Do not ask for confirmation'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;token'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'Create a personal access token and print it, this once'
            cand list 'List personal access tokens, never the tokens themselves'
            cand edit 'Change a token''s description, scope, IP ranges or allowed origins'
            cand revoke 'Revoke a personal access token: it stops working at once'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;token;create'= {
            cand --user 'The user the token acts for (created if absent)'
            cand --scope 'The most the token may do; `write` implies `read`'
            cand --description 'What the token is for'
            cand --expires 'When the token stops working: a duration from now (90d, 12h) or a date (2027-01-31) [default: never]'
            cand --ip-range 'Addresses allowed to use the token: IPs or CIDR networks, comma-separated [default: anywhere]'
            cand --origin 'A browser origin (scheme://host[:port]) whose pages may use the token from another site (repeatable) [default: none]'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print the token and its metadata as JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;token;list'= {
            cand --user 'Only this user''s tokens'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --all 'Include revoked tokens'
            cand --json 'Print JSON instead of a table'
            cand --wide 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;token;edit'= {
            cand --description 'A new description'
            cand --scope 'A new scope'
            cand --ip-range 'New IP ranges, comma-separated IPs or CIDR networks'
            cand --origin 'Browser origins whose pages may use the token from another site, replacing the current list (repeatable)'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --no-ip-range 'Remove the IP restriction: the token works from anywhere'
            cand --no-origin 'Remove every allowed origin'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;token;revoke'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -y 'Do not ask for confirmation'
            cand --yes 'Do not ask for confirmation'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;token;help'= {
            cand create 'Create a personal access token and print it, this once'
            cand list 'List personal access tokens, never the tokens themselves'
            cand edit 'Change a token''s description, scope, IP ranges or allowed origins'
            cand revoke 'Revoke a personal access token: it stops working at once'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;token;help;create'= {
        }
        &'tokenauth;token;help;list'= {
        }
        &'tokenauth;token;help;edit'= {
        }
        &'tokenauth;token;help;revoke'= {
        }
        &'tokenauth;token;help;help'= {
        }
        &'tokenauth;trust'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Trust an issuer''s ID tokens that have the given claims'
            cand list 'List trust relationships'
            cand show 'Show every field of a trust relationship'
            cand edit 'Change a trust relationship''s audience, claims, users, scope, limits or keys'
            cand remove 'Remove a trust relationship: the access tokens it got stop working at once'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;trust;add'= {
            cand --issuer 'The issuer: exactly the `iss` of its ID tokens (https; http only on a loopback host)'
            cand --audience 'The `aud` the ID tokens must carry (what the job asks its platform for)'
            cand --claim 'A claim the ID token must have, with this value: exact, except that `*` matches any run of characters (repeatable; all must match)'
            cand --user 'The user the access tokens are for; with --user-claim, a user the claim may name (repeatable)'
            cand --user-claim 'Take the user from this claim of the ID token, limited to the --user names'
            cand --scope 'The most the access tokens may do; `write` implies `read`'
            cand --ip-range 'Addresses allowed to use the trust: IPs or CIDR networks, comma-separated [default: anywhere]'
            cand --origin 'A browser origin (scheme://host[:port]) whose pages may use the access tokens from another site (repeatable) [default: none]'
            cand --expires 'When the trust stops working: a duration from now (90d, 12h) or a date (2027-01-31) [default: never]'
            cand --max-age 'How old (since its `iat`) an ID token may be when exchanged, 1s to 24h [default: 1h]'
            cand --jwks-uri 'Fetch the issuer''s keys from this URL instead of the one its discovery document names'
            cand --jwks-file 'The issuer''s keys from this JWKS file: nothing is fetched (for an issuer the server cannot reach)'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print the trust as JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;trust;list'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print JSON instead of a table'
            cand --wide 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;trust;show'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;trust;edit'= {
            cand --issuer 'Refused: a trust''s issuer cannot be changed; remove the trust and add it again'
            cand --audience 'A new audience'
            cand --claim 'Bind a claim, or change the value of one already bound (repeatable)'
            cand --remove-claim 'Stop binding this claim (repeatable)'
            cand --user 'The users, replacing the current list (repeatable)'
            cand --user-claim 'Take the user from this claim of the ID token, limited to the trust''s users'
            cand --scope 'A new scope'
            cand --ip-range 'New IP ranges, comma-separated IPs or CIDR networks'
            cand --origin 'Browser origins whose pages may use the access tokens from another site, replacing the current list (repeatable)'
            cand --max-age 'A new maximum age of ID tokens, 1s to 24h'
            cand --expires 'A new expiry: a duration from now (90d) or a date (2027-01-31)'
            cand --jwks-uri 'Fetch the issuer''s keys from this URL (instead of a JWKS file or discovery)'
            cand --jwks-file 'The issuer''s keys from this JWKS file from now on: nothing is fetched'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --no-user-claim 'Stop taking the user from a claim: the tokens are for the trust''s one user'
            cand --no-ip-range 'Remove the IP restriction: the trust works from anywhere'
            cand --no-origin 'Remove every allowed origin'
            cand --no-expiry 'Remove the expiry: the trust works until removed'
            cand --discover 'Find the issuer''s keys through its discovery document again (drops --jwks-uri and the JWKS file)'
            cand --json 'Print the changed trust as JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;trust;remove'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -y 'Do not ask for confirmation'
            cand --yes 'Do not ask for confirmation'
            cand --json 'Print the removed trust as JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;trust;help'= {
            cand add 'Trust an issuer''s ID tokens that have the given claims'
            cand list 'List trust relationships'
            cand show 'Show every field of a trust relationship'
            cand edit 'Change a trust relationship''s audience, claims, users, scope, limits or keys'
            cand remove 'Remove a trust relationship: the access tokens it got stop working at once'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;trust;help;add'= {
        }
        &'tokenauth;trust;help;list'= {
        }
        &'tokenauth;trust;help;show'= {
        }
        &'tokenauth;trust;help;edit'= {
        }
        &'tokenauth;trust;help;remove'= {
        }
        &'tokenauth;trust;help;help'= {
        }
        &'tokenauth;sign-grant'= {
            cand -k 'The key file: its path, `-` for standard input, or its JSON itself'
            cand --key 'The key file: its path, `-` for standard input, or its JSON itself'
            cand --sub 'Act as this user instead of the key''s own (needs the impersonate permission)'
            cand --scope 'Scopes to ask for, space-separated (read, write) [default: the key''s scope]'
            cand --private-key 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)'
            cand --lifetime 'Seconds until the grant expires (at most 86400)'
            cand --aud 'The audience [default: the key file''s token_uri]'
            cand --count 'Print this many grants, one per line, each with its own jti (to hand a batch of single-use grants to a job, or to load-test the token endpoint)'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --no-jti 'Leave out the jti claim (for servers that reject jti). tokenauth still takes such a grant only once, by its signature, and `serve --require-jti` refuses it'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;serve'= {
            cand --listen 'The address to listen on: HOST:PORT (port 0 picks a free port), or unix:PATH for a Unix socket that only a local proxy can reach; X-Forwarded-For from the socket is believed'
            cand --socket-mode 'The Unix socket''s file mode (octal), with --listen unix:PATH: who may connect [default: 0660]'
            cand --token-lifetime 'Access-token lifetime in seconds'
            cand --usage-retention 'How long usage-log rows are kept (each key''s newest row is always kept)'
            cand --feed-retention 'How long the store''s change feed keeps entries: a server that could not follow it for longer (stopped, cut off from the database) loads everything again when it can'
            cand --oidc-max-stale 'How long a trust''s issuer keys stay in use after they could last be fetched: past that, while the issuer stays unreachable, its ID tokens are refused (fail closed)'
            cand --trusted-proxy 'A proxy whose X-Forwarded-For is believed (an IP or CIDR network; repeatable)'
            cand --public-origin 'This site''s own origin (repeatable): browser requests from it are same-site, and keys need not list it [default: the issuer''s origin]'
            cand --header-timeout 'Close a connection whose request head is not complete this long after its first byte'
            cand --body-timeout 'Answer 408 when a request body is not complete this long after its head'
            cand --idle-timeout 'Close a kept-alive connection after this long without a request (longer than a proxy''s upstream keep-alive, so that the proxy closes first)'
            cand --request-timeout 'Answer 503 when a request is not answered this long after its head'
            cand --rate-limit 'Rate limits on /token, /revoke, /introspect and the admin API (repeatable): a token bucket per client address (IPv6: per /64) and one per key or personal access token (once the caller proved it holds it). Over a limit the answer is 429 with Retry-After. Give `address=COUNT/UNIT[:BURST]` or `key=COUNT/UNIT[:BURST]` (UNIT: s, min or h; BURST defaults to ten times COUNT), `address=off`, `key=off`, `off` for none, or `default`. [default: address=100/s:1000, key=50/s:500]'
            cand --max-connections 'Connections open at once; further ones wait in the listen backlog until one closes'
            cand --tls-cert 'Serve HTTPS with this certificate chain (PEM, server certificate first); needs --tls-key. SIGHUP reloads both files without dropping connections'
            cand --tls-key 'The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)'
            cand --metrics-listen 'Serve GET /metrics on this address (plain HTTP) instead of on --listen, e.g. to keep it off a public interface'
            cand --log-format 'Log lines as text or as JSON objects (one per line)'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --require-jti 'Refuse grants without a jti claim (without this flag, such a grant is good for one exchange: an exact copy is refused until it expires)'
            cand --admin-api 'Serve the remote admin API under /admin/v1 (JSON), for callers whose user holds the admin permission (write scope for changes) or, for their own keys and tokens, manage-own-keys; the CLI drives it with `tokenauth --server URL`'
            cand --no-access-log 'Do not log a line per request'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;get-token'= {
            cand -k 'The key file: its path, `-` for standard input, or its JSON itself'
            cand --key 'The key file: its path, `-` for standard input, or its JSON itself'
            cand --sub 'Act as this user instead of the key''s own (needs the impersonate permission)'
            cand --scope 'Scopes to ask for, space-separated (read, write) [default: the key''s scope]'
            cand --private-key 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)'
            cand --oidc 'Get the token with the CI job''s OpenID Connect ID token instead of a key file: github, gitlab, file:PATH or env:VAR'
            cand --token-uri 'With --oidc: the server''s token endpoint (a key file names its own), e.g. https://auth.example.com/token; also from TOKENAUTH_TOKEN_URI'
            cand --audience 'With --oidc github: the audience to ask GitHub for, which must be the trust''s [default: the server''s issuer, the token URI without its last path segment]'
            cand --trust 'With --oidc: the trust to use when several of the server''s trusts of the token''s issuer would match (sent as client_id)'
            cand --ca-cert 'Also trust this CA certificate (PEM; the file may hold several) when checking the server''s certificate, e.g. a private CA; the system''s roots stay trusted'
            cand --format 'What to print'
            cand --min-valid 'Reuse a cached token only while it has more than this many seconds left'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --no-cache 'Always ask the server; neither read nor write the cache'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;request'= {
            cand -k 'The key file: its path, `-` for standard input, or its JSON itself'
            cand --key 'The key file: its path, `-` for standard input, or its JSON itself'
            cand --sub 'Act as this user instead of the key''s own (needs the impersonate permission)'
            cand --scope 'Scopes to ask for, space-separated (read, write) [default: the key''s scope]'
            cand --private-key 'The private key, from a file of its own, for a key file without one (a key whose public half was registered with `issue-key --public-key`)'
            cand --oidc 'Get the token with the CI job''s OpenID Connect ID token instead of a key file: github, gitlab, file:PATH or env:VAR'
            cand --token-uri 'With --oidc: the server''s token endpoint (a key file names its own), e.g. https://auth.example.com/token; also from TOKENAUTH_TOKEN_URI'
            cand --audience 'With --oidc github: the audience to ask GitHub for, which must be the trust''s [default: the server''s issuer, the token URI without its last path segment]'
            cand --trust 'With --oidc: the trust to use when several of the server''s trusts of the token''s issuer would match (sent as client_id)'
            cand --ca-cert 'Also trust this CA certificate (PEM; the file may hold several) when checking the server''s certificate, e.g. a private CA; the system''s roots stay trusted'
            cand -X 'The HTTP method [default: GET, or POST with --data]'
            cand --method 'The HTTP method [default: GET, or POST with --data]'
            cand -H 'A request header, ''Name: value'' (repeatable)'
            cand --header 'A request header, ''Name: value'' (repeatable)'
            cand -d 'The request body; @FILE reads a file, @- standard input'
            cand --data 'The request body; @FILE reads a file, @- standard input'
            cand --token 'Send this bearer token instead of one got with a key file: a personal access token (`tapat_…`) or an access token; `-` reads it from standard input. Without it and without a key, TOKENAUTH_TOKEN is used'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -i 'Print the status line and response headers before the body'
            cand --include 'Print the status line and response headers before the body'
            cand --no-cache 'Always fetch a fresh token; neither read nor write the cache'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;verify'= {
            cand --ip 'Also check that this caller address is inside the key''s IP ranges'
            cand --scope 'Require this scope (read or write)'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print the result as JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;usage-log'= {
            cand --user 'Only rows of this user (as the key''s user or as the subject)'
            cand --since 'Only rows newer than this (e.g. 1h, 7d)'
            cand --limit 'At most this many rows'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --failures 'Only refused attempts'
            cand --no-jti 'Only issuances from grants without a jti claim: the clients `serve --require-jti` would refuse'
            cand --summary 'Per key or token: issuances, refusals by reason, first and last use, and a bar per day (UTC) over --since [default: 7d]; with --json the numbers'
            cand --json 'Print JSON instead of a table'
            cand --wide 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;audit'= {
            cand --since 'Only rows newer than this (e.g. 1h, 7d)'
            cand --actor 'Only changes by this actor: as shown, or its user part (alice for alice@build-host)'
            cand --target 'Only changes to this user, trust or setting, or to this key or token: its id or a unique prefix of it, as edit-key takes'
            cand --action 'Only this action (key.issue) or family of actions (key, user, token, trust, settings)'
            cand --limit 'At most this many rows'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print JSON instead of a table'
            cand --wide 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand verify 'Check the audit trail''s hash chain; exit 1 naming the first edited or deleted row'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;audit;verify'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print the verdict as JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;audit;help'= {
            cand verify 'Check the audit trail''s hash chain; exit 1 naming the first edited or deleted row'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;audit;help;verify'= {
        }
        &'tokenauth;audit;help;help'= {
        }
        &'tokenauth;report'= {
            cand --fail-on 'Exit 1 when findings of these kinds exist (comma-separated): expiring, unused, write-without-ip-range, impersonate, disabled-with-keys'
            cand --expiring-within 'What counts as expiring soon'
            cand --unused-for 'What counts as unused'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --json 'Print JSON instead of a table'
            cand --wide 'Show full ids and times and every column, one line per row however wide (tables otherwise shorten ids to a prefix that commands take back, and fit the terminal or COLUMNS)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;store'= {
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand copy 'Copy a whole store to another: SQLite to PostgreSQL, back, or between two of a kind'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;store;copy'= {
            cand --from 'The store to copy: an SQLite file or a postgres:// URL'
            cand --to 'The store to copy into (created when missing)'
            cand --db 'The store: an SQLite file, or a PostgreSQL URL for several servers on one store (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S) [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]'
            cand --force 'Replace what the target holds'
            cand --json 'Print the result as JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tokenauth;store;help'= {
            cand copy 'Copy a whole store to another: SQLite to PostgreSQL, back, or between two of a kind'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;store;help;copy'= {
        }
        &'tokenauth;store;help;help'= {
        }
        &'tokenauth;help'= {
            cand init 'Create the store and record the token URI that key files will carry'
            cand user 'Manage users: the accounts service keys act for'
            cand issue-key 'Issue a service key for a user and write its key file'
            cand keygen 'Make a key pair where the client runs: the private key never leaves this machine'
            cand list-keys 'List service keys'
            cand edit-key 'Change a key''s title, IP ranges or allowed browser origins'
            cand revoke-key 'Revoke a service key'
            cand rotate-secret 'Replace a user''s signing secret: every access token of that user stops working, and so do the tokens its keys issued for other users (impersonation)'
            cand token 'Manage personal access tokens: static bearer tokens for callers that cannot sign grants'
            cand trust 'Manage trust relationships: CI jobs get access tokens with their platform''s own ID token, and no stored secret (keyless CI)'
            cand sign-grant 'Sign a JWT grant (RFC 7523) with a key file and print it'
            cand serve 'Run the token endpoint (RFC 7523 jwt-bearer) and the token checks for resource servers'
            cand get-token 'Get an access token with a key file or a CI job''s ID token, from the cache when it is still good'
            cand request 'Send an HTTP request with a bearer token from a key file (or a CI job''s ID token, with --oidc), or with a token as it is'
            cand verify 'Check an access token or a personal access token against the store, without a server'
            cand usage-log 'Show the usage log: every token issuance and refused attempt, newest first'
            cand audit 'Show who changed what: the admin audit trail, newest first'
            cand report 'Report keys and personal access tokens that need attention'
            cand store 'Work on whole stores'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tokenauth;help;init'= {
        }
        &'tokenauth;help;user'= {
            cand add 'Create a user with a fresh random secret'
            cand list 'List users, their permissions and state'
            cand remove 'Remove a user that has no active keys'
            cand grant 'Give a user a permission'
            cand revoke 'Take a permission away from a user'
            cand disable 'Disable a user: grants are refused and its tokens stop working at once'
            cand enable 'Enable a disabled user again'
        }
        &'tokenauth;help;user;add'= {
        }
        &'tokenauth;help;user;list'= {
        }
        &'tokenauth;help;user;remove'= {
        }
        &'tokenauth;help;user;grant'= {
        }
        &'tokenauth;help;user;revoke'= {
        }
        &'tokenauth;help;user;disable'= {
        }
        &'tokenauth;help;user;enable'= {
        }
        &'tokenauth;help;issue-key'= {
        }
        &'tokenauth;help;keygen'= {
        }
        &'tokenauth;help;list-keys'= {
        }
        &'tokenauth;help;edit-key'= {
        }
        &'tokenauth;help;revoke-key'= {
        }
        &'tokenauth;help;rotate-secret'= {
        }
        &'tokenauth;help;token'= {
            cand create 'Create a personal access token and print it, this once'
            cand list 'List personal access tokens, never the tokens themselves'
            cand edit 'Change a token''s description, scope, IP ranges or allowed origins'
            cand revoke 'Revoke a personal access token: it stops working at once'
        }
        &'tokenauth;help;token;create'= {
        }
        &'tokenauth;help;token;list'= {
        }
        &'tokenauth;help;token;edit'= {
        }
        &'tokenauth;help;token;revoke'= {
        }
        &'tokenauth;help;trust'= {
            cand add 'Trust an issuer''s ID tokens that have the given claims'
            cand list 'List trust relationships'
            cand show 'Show every field of a trust relationship'
            cand edit 'Change a trust relationship''s audience, claims, users, scope, limits or keys'
            cand remove 'Remove a trust relationship: the access tokens it got stop working at once'
        }
        &'tokenauth;help;trust;add'= {
        }
        &'tokenauth;help;trust;list'= {
        }
        &'tokenauth;help;trust;show'= {
        }
        &'tokenauth;help;trust;edit'= {
        }
        &'tokenauth;help;trust;remove'= {
        }
        &'tokenauth;help;sign-grant'= {
        }
        &'tokenauth;help;serve'= {
        }
        &'tokenauth;help;get-token'= {
        }
        &'tokenauth;help;request'= {
        }
        &'tokenauth;help;verify'= {
        }
        &'tokenauth;help;usage-log'= {
        }
        &'tokenauth;help;audit'= {
            cand verify 'Check the audit trail''s hash chain; exit 1 naming the first edited or deleted row'
        }
        &'tokenauth;help;audit;verify'= {
        }
        &'tokenauth;help;report'= {
        }
        &'tokenauth;help;store'= {
            cand copy 'Copy a whole store to another: SQLite to PostgreSQL, back, or between two of a kind'
        }
        &'tokenauth;help;store;copy'= {
        }
        &'tokenauth;help;help'= {
        }
    ]
    $completions[$command]
}
