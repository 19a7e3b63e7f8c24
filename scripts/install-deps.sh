#!/usr/bin/env bash
# Installs the Debian packages the real-peer tests (tests/real_peers.rs) need:
#   dovecot-core         doveadm (auth test / auth login / auth lookup / user / pw)
#   postfix              an SMTP server with smtpd_sasl_type = dovecot
#   swaks                the SMTP client that drives it
#   libauthen-sasl-perl  SASL support for swaks's AUTH
#   fail2ban             fail2ban-regex, to check packaging/fail2ban against the real log
# and those the PAM passdb and its tests (tests/pam.rs) need:
#   libpam0g-dev         libpam.so, to link the pam passdb
#   libpam-modules       pam_userdb, pam_listfile, pam_exec (the test services)
#   libpam-pwdfile       pam_pwdfile (a second test service; skipped without it)
#   db5.3-util           db5.3_load, to build pam_userdb's user database
#   winbind samba        winbindd, ntlm_auth, wbinfo, smbpasswd for NTLM/GSS-SPNEGO (tests/winbind.rs)
#   libnss-wrapper       the Unix accounts behind the test's Samba users, without /etc/passwd
#   libauthen-ntlm-perl  NTLM support for swaks's AUTH
#   slapd ldap-utils     OpenLDAP's server and tools, for the ldap passdb/userdb (tests/ldap.rs)
#   dovecot-ldap         Dovecot's LDAP driver, for scripts/bench-ldap-vs-dovecot.sh
#   dovecot-imapd        a stock Dovecot IMAP server on saslgate (tests/dovecot_imap.rs)
#   openssl              the throwaway CA, client certificate and s_client (tests/dovecot_imap.rs)
# and, from PyPI, scramp (an independent SCRAM client) and pyspnego (NTLMv2 / SPNEGO client).
# tests/e2e_pam_winbind.rs (Postfix + PAM, AD sign-on end to end) uses the same set.
# Idempotent and silent when everything is present. As root it installs what is missing
# (apt-get update once, non-interactive, Postfix preseeded to "No configuration", no service
# started); otherwise it says what to install and exits 1.
set -euo pipefail

# Is Debian package $1 installed, or (for tools installed some other way) program $2 on the path?
have() {
  local pkg=$1 prog=${2:-}
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    return 0
  fi
  if [ -n "$prog" ]; then
    command -v "$prog" >/dev/null 2>&1 || [ -x "/usr/sbin/$prog" ] || [ -x "/sbin/$prog" ]
  else
    return 1
  fi
}

missing=()
have dovecot-core doveadm || missing+=(dovecot-core)
have postfix postfix || missing+=(postfix)
have swaks swaks || missing+=(swaks)
have libauthen-sasl-perl || perl -MAuthen::SASL -e 1 >/dev/null 2>&1 || missing+=(libauthen-sasl-perl)
have fail2ban fail2ban-regex || missing+=(fail2ban)
have libpam0g-dev || missing+=(libpam0g-dev)
have libpam-modules || missing+=(libpam-modules)
have libpam-pwdfile || missing+=(libpam-pwdfile)
have db5.3-util db5.3_load || missing+=(db5.3-util)
have winbind ntlm_auth || missing+=(winbind)
have samba smbpasswd || missing+=(samba)
have libnss-wrapper || [ -e /usr/lib/x86_64-linux-gnu/libnss_wrapper.so ] || missing+=(libnss-wrapper)
have libauthen-ntlm-perl || perl -MAuthen::NTLM -e 1 >/dev/null 2>&1 || missing+=(libauthen-ntlm-perl)
have slapd slapd || missing+=(slapd)
have ldap-utils ldapadd || missing+=(ldap-utils)
have dovecot-ldap || [ -e /usr/lib/dovecot/modules/auth/libauthdb_ldap.so ] || missing+=(dovecot-ldap)
have dovecot-imapd || [ -e /usr/lib/dovecot/imap-login ] || missing+=(dovecot-imapd)
have openssl openssl || missing+=(openssl)

# Python test clients from PyPI (no Debian package has them): scramp, an independent SCRAM
# client (tests/real_peers.rs); pyspnego, an NTLMv2 / SPNEGO client (tests/winbind.rs, e2e).
# A Debian system Python refuses pip installs (PEP 668) unless told these are test tools.
pip_need() { # module package
  python3 -c "import $1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: the Python package $2 is missing: python3 -m pip install --user $2" >&2
    exit 1
  fi
  python3 -m pip install --quiet --root-user-action=ignore "$2" >/dev/null 2>&1 \
    || python3 -m pip install --quiet --root-user-action=ignore --break-system-packages "$2" >/dev/null \
    || { echo "install-deps: pip install $2 failed" >&2; exit 1; }
}
pip_need scramp scramp
pip_need spnego pyspnego

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages for the real-peer tests: ${missing[*]}" >&2
  echo "install-deps: run this script as root (sudo $0), or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Postfix: no system mail configuration (the tests write their own main.cf / master.cf).
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
# slapd: no system directory (the tests write their own slapd.conf and database).
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections 2>/dev/null || true

# Installing must not start a system Dovecot/Postfix: deny service starts for the duration,
# unless the machine already has a policy of its own.
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  own_policy=1
fi
cleanup() { if [ -n "$own_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt_opts=(-q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt-get "${apt_opts[@]}" update >/dev/null
apt-get "${apt_opts[@]}" install -y "${missing[@]}" >/dev/null

# Check the result the way the tests will look for it.
for prog in doveadm postfix swaks fail2ban-regex db5.3_load ntlm_auth winbindd smbpasswd; do
  if ! command -v "$prog" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$prog" ]; then
    echo "install-deps: $prog still missing after apt-get install" >&2
    exit 1
  fi
done
echo "install-deps: installed ${missing[*]}"
