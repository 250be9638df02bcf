#!/bin/sh
# mkcerts.sh DIR -- test certificates (test-net, the fault tests), made
# fresh each run:
#   ca.pem                  the test CA
#   good.pem/.key           CA-signed, SAN DNS:localhost, IP:127.0.0.1
#   self.pem/.key           self-signed, same SANs
#   wronghost.pem/.key      CA-signed, SAN DNS:other.example only
#   expired.pem/.key        CA-signed, good SANs, valid 2020-2021
#   untrusted.pem/.key      good SANs, signed by otherca.pem (not ca.pem)
set -eu
d=$1
cd "$d"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
san="subjectAltName=DNS:localhost,IP:127.0.0.1"

openssl req -x509 $ec -keyout ca.key -out ca.pem -days 30 \
    -subj "/CN=mailhaul test CA" \
    -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null

leaf() {	# name cn san
	openssl req $ec -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" \
	    2>/dev/null
	printf '%s\nbasicConstraints=CA:FALSE\n' "$3" > "$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key \
	    -CAcreateserial -days 30 -extfile "$1.ext" -out "$1.pem" \
	    2>/dev/null
}
leaf good localhost "$san"
leaf wronghost other.example "subjectAltName=DNS:other.example"

openssl req -x509 $ec -keyout self.key -out self.pem -days 30 \
    -subj "/CN=localhost" -addext "$san" 2>/dev/null

# Expired: openssl ca takes explicit start and end dates in the past.
mkdir -p caroot
: > caroot/index.txt
echo 1000 > caroot/serial
cat > ca.cnf <<CNF
[ca]
default_ca = test
[test]
dir = caroot
database = caroot/index.txt
serial = caroot/serial
new_certs_dir = caroot
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[any]
commonName = supplied
[leafext]
basicConstraints = CA:FALSE
$san
CNF
openssl req $ec -keyout expired.key -out expired.csr -subj "/CN=localhost" \
    2>/dev/null
openssl ca -batch -config ca.cnf -extensions leafext -notext \
    -startdate 20200101000000Z -enddate 20210101000000Z \
    -in expired.csr -out expired.pem 2>/dev/null
test -s expired.pem

# Untrusted: good names, signed by a CA the client was not given.
openssl req -x509 $ec -keyout otherca.key -out otherca.pem -days 30 \
    -subj "/CN=some other CA" \
    -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req $ec -keyout untrusted.key -out untrusted.csr -subj "/CN=localhost" \
    2>/dev/null
printf '%s\nbasicConstraints=CA:FALSE\n' "$san" > untrusted.ext
openssl x509 -req -in untrusted.csr -CA otherca.pem -CAkey otherca.key \
    -CAcreateserial -days 30 -extfile untrusted.ext -out untrusted.pem \
    2>/dev/null
test -s untrusted.pem
