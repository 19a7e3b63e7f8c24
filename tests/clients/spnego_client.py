#!/usr/bin/python3
"""NTLM / SPNEGO client for tests/winbind.rs, on pyspnego (NTLMv2 only).

  spnego_client.py --protocol ntlm|negotiate --user U --password P [--domain D]

Line protocol on stdin/stdout, one base64 token per line:
  prints the first client token; then for every server token read it prints the next client
  token, or `DONE` when the context is complete and has nothing more to send. Exits on EOF.
  A server token of `-` means "none" (a final step without data).
"""
import argparse
import base64
import sys

import spnego


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["ntlm", "negotiate"], required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--domain", default="")
    a = ap.parse_args()
    user = f"{a.domain}\\{a.user}" if a.domain else a.user
    ctx = spnego.client(user, a.password, hostname="saslgate-test", service="host",
                        protocol=a.protocol, options=spnego.NegotiateOptions.use_ntlm
                        if a.protocol == "ntlm" else spnego.NegotiateOptions.use_negotiate)
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
