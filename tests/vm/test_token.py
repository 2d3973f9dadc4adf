#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The authentication token (R-AUTH-4) with real udev, logind, PAM and the agent in the
guest: a user the policy ties to a token cannot log in without it; with it plugged in
they can; pulling it out locks their session at once (the measured delay is printed),
and the lock prompt (which says why) lets them in again only once the token is back. On
a host exempt from the idle lock (R-IDLE-2) a pulled token still locks.

One boot; the session and PAM set-up are vm-idle's (test_idle.py)."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamori_vm import check, make_image, run_scenarios  # noqa: E402
from test_idle import (BANNER, CONFIG_PATH, MEDIACTL, PASSWORD, PW_PROMPT, USER, Term, as_user,  # noqa: E402
                       counter, last_seq, records, session_of, setup, wait_record)

SERIAL = "TOKEN-VM-1"
# idle lock far away: only the token locks in this test
CONFIG = 'idle: { timeout = 3600; };\nauth: { deny = 5; unlock_time = 900; token_users = [ "%s" ]; };\n' % USER


def rec_after(vm, type_, seq0, **fields):
    def find():
        for r in records(vm, type_):
            if r["seq"] > seq0 and all(r["fields"].get(k) == v for k, v in fields.items()):
                return r
        return None
    return vm.wait_for(find, timeout=60, interval=0.5, what="%s %r after %d" % (type_, fields, seq0))


def token_pull_locks(vm):
    """R-AUTH-4, R-EV-5: refused without the token; with it, a session; pulled, locked at once."""
    setup(vm)
    vm.copy_in(CONFIG.encode(), CONFIG_PATH)
    vm.run(["systemctl", "stop", "mamori-policyd.service"], check=False)
    vm.run(["systemctl", "restart", "mamori-agent.service"], check=True)
    vm.run(as_user(vm, "mamori-t-admin") + [MEDIACTL, "token", "register", "--no", "TK-VM", "--user", USER,
                                            "--vendor", "46f4", "--product", "0001", "--serial", SERIAL],
           check=True)
    # Without the token: the account face refuses even login -f (no password asked).
    seq0 = last_seq(vm)
    t0 = Term(vm, "tok0", ["login", "-f", USER])
    t0.wait_output(b"authentication token is not plugged in", timeout=120)
    r = vm.run(["loginctl", "list-sessions", "--no-legend"])
    check(USER not in r.stdout, "a session was opened without the token: %r", r.stdout)
    refused = [x for x in records(vm, "auth.refused") if x["fields"].get("reason") == "token-absent"]
    check(refused and refused[-1]["fields"].get("user") == USER, "no token-absent refusal recorded: %r", refused)
    # With the token plugged in.
    img = make_image(os.path.join(vm.workdir, "token.img"), "vfat", 16, label="TOKEN")
    tok = vm.plug_stick(img, vendor="Yubi", product="Token", serial=SERIAL)
    tok.wait_usb_event()
    ins = rec_after(vm, "token.insert", seq0, user=USER)
    check(ins["fields"].get("token") == "TK-VM", "insert record %r", ins["fields"])
    term = Term(vm, "tok1", ["login", "-f", USER])
    sid = session_of(vm)
    term.shell_alive("start", timeout=180)
    term.type("(i=0; while :; do i=$((i+1)); echo $i > /tmp/counter-%s; sleep 0.2; done) &\n" % USER)
    vm.wait_for(lambda: counter(vm) > 3, timeout=30, what="the counter running")
    n = len(term.output())
    seq1 = last_seq(vm)
    # Pulled out: locked at once.
    tok.pull()
    lock = wait_record(vm, "session.lock", sid, after_seq=seq1, timeout=60)
    rem = rec_after(vm, "agent.removal", seq0, serial=SERIAL)
    out = rec_after(vm, "token.remove", seq0, user=USER)
    delay = (lock["time_us"] - rem["time_us"]) / 1e6
    print("# token pulled: session locked %.3f s after the agent saw the removal (token.remove after %.3f s)"
          % (delay, (out["time_us"] - rem["time_us"]) / 1e6), flush=True)
    check(lock["fields"].get("action") == "token-removed", "lock record %r", lock["fields"])
    check(0 <= delay <= 1.0, "locked %.3f s after the removal, want within 1 s", delay)
    pos = term.wait_output(BANNER, start=n, timeout=30)
    c1 = counter(vm)
    time.sleep(1.5)
    check(counter(vm) == c1, "the counter ran while locked")
    # While the token is out the prompt does not even ask for the password.
    pos = term.wait_output(b"authentication token is not plugged in", start=pos, timeout=60)
    check(PW_PROMPT not in term.output()[n:], "the password was asked for while the token was out")
    check(counter(vm) == c1, "unlocked without the token")
    # Token back, password: unlocked, the program runs on.
    tok = vm.plug_stick(img, vendor="Yubi", product="Token", serial=SERIAL)
    tok.wait_usb_event()
    rec_after(vm, "token.insert", seq1, user=USER)
    term.wait_output(PW_PROMPT, start=pos, timeout=60)
    term.type(PASSWORD + "\n")
    un = wait_record(vm, "session.unlock", sid, after_seq=seq1)
    check(un["fields"]["how"] == "password", "unlock record %r", un["fields"])
    vm.wait_for(lambda: counter(vm) > c1, timeout=30, what="the counter running after the unlock")
    check("認証トークンが取り外されたため".encode() in term.output()[n:] and
          b"authentication token was removed" in term.output()[n:],
          "the prompt does not say that the token was removed: %r", term.output()[n:][-1500:])

    # R-IDLE-2 exempts a host from the idle lock only: a pulled token still locks (R-AUTH-4).
    vm.copy_in(CONFIG.replace("idle: { timeout = 3600; };",
                              'idle: { exempt = true; exempt_approver = "CISO"; exempt_reason = "kiosk"; };')
               .encode(), CONFIG_PATH)
    vm.run(["systemctl", "restart", "mamori-agent.service"], check=True)
    vm.wait_for(lambda: re.search(rb"idle=exempt\n(.*\n)*idle_sessions=[1-9]",
                                  vm.read("/run/mamori-agent/status") or b""),
                timeout=60, what="the exempt agent watching the session")
    seq2 = last_seq(vm)
    vm.wait_for(lambda: "plugged in" in vm.run(as_user(vm, "mamori-t-admin") + [MEDIACTL, "token", "list"]).stdout,
                timeout=60, what="the token reported present by the restarted agent")
    n = len(term.output())
    tok.pull()
    lock = wait_record(vm, "session.lock", sid, after_seq=seq2, timeout=60)
    check(lock["fields"].get("action") == "token-removed", "exempt host: lock record %r", lock["fields"])
    pos = term.wait_output(BANNER, start=n, timeout=30)
    tok = vm.plug_stick(img, vendor="Yubi", product="Token", serial=SERIAL)
    tok.wait_usb_event()
    term.wait_output(PW_PROMPT, start=pos, timeout=60)
    term.type(PASSWORD + "\n")
    un = wait_record(vm, "session.unlock", sid, after_seq=seq2)
    check(un["fields"]["how"] == "password", "exempt host: unlock record %r", un["fields"])
    term.type("kill %1; exit\n")
    tok.pull()


if __name__ == "__main__":
    sys.exit(run_scenarios([token_pull_locks], name="vm-token", install_build=True,
                           enable=["mamori-policyd.socket", "mamori-agent.service"]))
