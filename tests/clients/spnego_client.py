#!/usr/bin/python3
"""NTLM / SPNEGO client for tests/winbind.rs and tests/e2e_pam_winbind.rs, on pyspnego
(NTLMv2 only).

  spnego_client.py --protocol ntlm|negotiate --user U --password P [--domain D]
  spnego_client.py --serve

Line protocol on stdin/stdout, one base64 token per line:
  prints the first client token; then for every server token read it prints the next client
  token, or `DONE` when the context is complete and has nothing more to send. Exits on EOF.
  A server token of `-` means "none" (a final step without data).

With --serve, one process runs many contexts (importing pyspnego takes most of a second), one
command a line, one answer line each (a base64 token, or `DONE`):
  START <id> <protocol> <user> <password> <domain>   (user, password, domain base64, - if empty; prints
                                                      the first token)
  STEP <id> <server token, base64, or ->             (prints the next token or DONE)
  END <id>                                           (prints DONE)
"""
import argparse
import base64
import sys

import spnego


def context(protocol, user, password, domain):
    user = f"{domain}\\{user}" if domain else user
    return spnego.client(user, password, hostname="saslgate-test", service="host",
                         protocol=protocol, options=spnego.NegotiateOptions.use_ntlm
                         if protocol == "ntlm" else spnego.NegotiateOptions.use_negotiate)


def answer(out):
    print(base64.b64encode(out).decode() if out else "DONE", flush=True)


def serve():
    contexts = {}
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "START":
            sid, protocol = words[1], words[2]
            user, password, domain = ("" if w == "-" else base64.b64decode(w).decode() for w in words[3:6])
            contexts[sid] = context(protocol, user, password, domain)
            answer(contexts[sid].step())
        elif words[0] == "STEP":
            token = None if words[2] == "-" else base64.b64decode(words[2])
            answer(contexts[words[1]].step(token))
        elif words[0] == "END":
            contexts.pop(words[1], None)
            answer(None)


def main():
    if sys.argv[1:] == ["--serve"]:
        return serve()
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["ntlm", "negotiate"], required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--domain", default="")
    a = ap.parse_args()
    ctx = context(a.protocol, a.user, a.password, a.domain)
    out = ctx.step()
    print(base64.b64encode(out).decode(), flush=True)
    for line in sys.stdin:
        line = line.strip()
        token = None if line == "-" else base64.b64decode(line)
        out = ctx.step(token)
        if out:
            print(base64.b64encode(out).decode(), flush=True)
        else:
            print("DONE", flush=True)


if __name__ == "__main__":
    main()
