#!/usr/bin/env python3
"""An independent SCRAM client (the `scramp` package from PyPI) speaking Dovecot's auth client
protocol to a socket. Used by tests/real_peers.rs to check saslgate's SCRAM against a client
that shares none of its code.

usage: scram_client.py SOCKET MECH USER PASSWORD [final-resp-ok]
Prints the server's last line. Exit 0: OK and the server signature verified;
1: the server said FAIL; 2: protocol or signature error.
"""
import base64
import socket
import sys

from scramp import ScramClient


def main():
    path, mech, user, password = sys.argv[1:5]
    final_resp_ok = len(sys.argv) > 5 and sys.argv[5] == "final-resp-ok"
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(path)
    f = s.makefile("rwb", buffering=0)

    def line():
        text = f.readline()
        if not text:
            raise SystemExit("connection closed")
        return text.rstrip(b"\n").decode()

    while line() != "DONE":
        pass
    client = ScramClient([mech], user, password)
    first = base64.b64encode(client.get_client_first().encode()).decode()
    extra = "\tfinal-resp-ok" if final_resp_ok else ""
    f.write(f"VERSION\t1\t2\nCPID\t4242\nAUTH\t1\t{mech}\tservice=imap\tno-penalty{extra}\tresp={first}\n".encode())
    reply = line()
    if not reply.startswith("CONT\t1\t"):
        print(reply)
        return 1 if reply.startswith("FAIL") else 2
    client.set_server_first(base64.b64decode(reply.split("\t", 2)[2]).decode())
    final = base64.b64encode(client.get_client_final().encode()).decode()
    f.write(f"CONT\t1\t{final}\n".encode())
    reply = line()
    if reply.startswith("CONT\t1\t"):
        server_final = base64.b64decode(reply.split("\t", 2)[2]).decode()
        f.write(b"CONT\t1\t\n")
        reply = line()
    elif reply.startswith("OK\t1\t"):
        fields = dict(x.split("=", 1) for x in reply.split("\t")[2:] if "=" in x)
        if "resp" not in fields:
            print(reply)
            return 2
        server_final = base64.b64decode(fields["resp"]).decode()
    else:
        print(reply)
        return 1 if reply.startswith("FAIL") else 2
    try:
        client.set_server_final(server_final)  # raises when the server signature is wrong
    except Exception as e:  # noqa: BLE001 - any verification error is a test failure
        print(f"server signature rejected: {e}")
        return 2
    print(reply)
    return 0 if reply.startswith("OK\t1\t") else 1


if __name__ == "__main__":
    sys.exit(main())
