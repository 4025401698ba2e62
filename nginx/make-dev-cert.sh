#!/bin/sh
# Turn on HTTPS for the compose setup: writes nginx/certs/https.conf, which nginx/docker-compose.conf
# includes, and a self-signed development certificate for it unless one is already there.
#
#   nginx/make-dev-cert.sh                      # certificate for localhost and 127.0.0.1
#   nginx/make-dev-cert.sh data.example.org     # other names (the first is the subject)
#   nginx/make-dev-cert.sh --force ...          # replace an existing certificate
#   nginx/make-dev-cert.sh --dir DIR ...        # write somewhere else than nginx/certs
#
# For a real certificate, put its full chain in nginx/certs/myapp.crt and its key in
# nginx/certs/myapp.key, then run this script: it keeps them and only writes https.conf.
# Then: docker compose restart nginx. To go back to plain HTTP, delete nginx/certs/https.conf.
set -eu

dir="$(cd "$(dirname "$0")" && pwd)/certs"
force=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) echo "make-dev-cert.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || set -- localhost

command -v openssl >/dev/null 2>&1 || {
    echo "make-dev-cert.sh: openssl is needed (apt-get install openssl)" >&2
    exit 1
}

mkdir -p "$dir"
crt="$dir/myapp.crt"
key="$dir/myapp.key"

if [ "$force" = 1 ] || [ ! -s "$crt" ] || [ ! -s "$key" ]; then
    san=""
    for name in "$@" 127.0.0.1 ::1; do
        case "$name" in
            *:*) entry="IP:$name" ;;
            *[!0-9.]*) entry="DNS:$name" ;;
            *) entry="IP:$name" ;;
        esac
        case ",$san," in *",$entry,"*) continue ;; esac
        san="${san:+$san,}$entry"
    done
    case "$san" in *DNS:localhost*) ;; *) san="$san,DNS:localhost" ;; esac
    # The key is written before anyone else could read it.
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 \
        -subj "/CN=$1" -addext "subjectAltName=$san" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -addext "extendedKeyUsage=serverAuth" \
        -keyout "$key" -out "$crt" 2>/dev/null
    umask 022
    chmod 644 "$crt"
    echo "made a self-signed certificate for $san (valid 825 days): $crt"
else
    echo "keeping the certificate already in $crt"
fi

cat > "$dir/https.conf" <<'CONF'
# Written by nginx/make-dev-cert.sh and included by nginx/docker-compose.conf inside its server
# block. Delete this file (and restart nginx) to serve plain HTTP only.
listen 443 ssl;
ssl_certificate certs/myapp.crt;
ssl_certificate_key certs/myapp.key;
ssl_protocols TLSv1.2 TLSv1.3;
ssl_session_cache shared:myapp_tls:10m;
ssl_session_timeout 1d;

# With a certificate, plain HTTP is sent to HTTPS (308 keeps the method and body of API calls).
if ($scheme = http) {
    return 308 https://$host$request_uri;
}

# With a certificate browsers trust (not a self-signed one), also tell them to use HTTPS only:
# add_header Strict-Transport-Security "max-age=31536000" always;
CONF
chmod 644 "$dir/https.conf"
echo "wrote $dir/https.conf: nginx serves HTTPS on 443 and redirects HTTP (docker compose restart nginx)"
