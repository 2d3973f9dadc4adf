#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The idle lock of graphical sessions (issue 8) with real systemd, logind, X and PAM.

R-IDLE-1: a graphical session idle past the test timeout is locked within 5 s of it,
through the desktop's screen locker when one answers logind's Lock, and by the agent's
own lock when none does; an idle inhibitor held by the user stops neither. R-AUTH-3
(and R-AUTH-1): the session unlocks only through pam_mamori, whose lockout counts every
wrong password typed into the locker or the agent's prompt. R-EV-5: every lock, unlock
(with how) and refused unlock is evidence. The measured delays are printed.

How the guest gets a real x11 logind session: `runuser -l` (PAM service runuser-l,
which has pam_systemd) started from a system service with XDG_SESSION_TYPE=x11 in its
environment; pam_systemd takes the type from there (its getenv falls back from the PAM
environment to the process's), so logind registers a session of type x11, class user,
with its own scope, and runuser's child (the session script, as the user) runs in it.
The script starts Xvfb, a counter (the user's long-running program), a user-held
`systemd-inhibit --what=idle`, and, for the locker case, `xss-lock --ignore-xss --
i3lock -n` (xss-lock runs i3lock on logind's Lock signal and sets LockedHint while
i3lock runs). An X desktop's idle monitor (gnome-session, or xss-lock itself on X
screensaver events) tells logind that the session went idle with the session method
SetIdleHint(true), as the session's user; the test does exactly that (busctl, as the
user; --ignore-xss keeps xss-lock from locking on Xvfb's own screensaver) and measures
from logind's IdleSinceHint, the time the agent counts from.

i3lock authenticates through PAM service "i3lock"; the guest's /etc/pam.d/i3lock is
the same stack as the agent's prompt (rules/pam-mamori-unlock: common-auth and
common-account with pam_mamori, put there by pam-auth-update as tests/vm/test_idle.py
does). Passwords go into i3lock with xdotool (XTEST) on the Xvfb display, and into the
agent's prompt with a USB keyboard through QEMU, on the VT the agent switched to.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamori_vm import check, run_scenarios  # noqa: E402
from test_idle import (CONFIG_PATH, MEDIACTL, MODULE, SOURCE, as_user, find_record, last_seq,  # noqa: E402
                       records, wait_record)
from test_idle import failures as idle_failures  # noqa: E402

TIMEOUT = 15
LOCKER_WAIT = 2.5  # agent/idle.c LOCKER_WAIT_US
USER, PASSWORD = "guiuser", "Gui#Pass7"
CONFIG = "idle: { timeout = %d; };\nauth: { deny = 5; unlock_time = 900; };\n" % TIMEOUT
PACKAGES = {"Xvfb": "xvfb", "xss-lock": "xss-lock", "i3lock": "i3lock", "xdotool": "xdotool",
            "xdpyinfo": "x11-utils"}
SESSION_SCRIPT = """#!/bin/sh
# The graphical session, as the user: $1 = 1 runs a screen locker.
export DISPLAY=:%(d)d
Xvfb :%(d)d -screen 0 640x480x24 -nolisten tcp >/tmp/gui-xvfb.log 2>&1 &
i=0; until xdpyinfo >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.2; done
(i=0; while :; do i=$((i+1)); echo $i > /tmp/gui-counter; sleep 0.2; done) &
systemd-inhibit --what=idle --who=test --why=keep-awake sleep 100000 &
if [ "$1" = 1 ]; then xss-lock --ignore-xss -- i3lock -n >/tmp/gui-xss.log 2>&1 & fi
echo "$XDG_SESSION_ID" > /tmp/gui-session-id
wait
"""
I3LOCK_PAM = """# /etc/pam.d/i3lock in the VM bench (tests/vm/test_graphical.py): the stack of the
# agent's own prompt (rules/pam-mamori-unlock), so pam_mamori's lockout applies.
@include common-auth
@include common-account
"""
DISPLAY = 5


def failures(vm):
    return idle_failures(vm, USER)


def session_prop(vm, sid, prop):
    return vm.run(["loginctl", "show-session", sid, "-p", prop, "--value"], check=True).stdout.strip()


def counter(vm):
    b = vm.read("/tmp/gui-counter")
    return int(b.decode().strip() or 0) if b else 0


def user_busctl(vm, sid, *args):
    """busctl on the session's logind object, as the session's user (what a desktop does)."""
    path = vm.run(["busctl", "call", "org.freedesktop.login1", "/org/freedesktop/login1",
                   "org.freedesktop.login1.Manager", "GetSession", "s", sid], check=True).stdout.split()[1]
    return vm.run(as_user(vm, USER) + ["busctl"] + list(args[:1]) + ["org.freedesktop.login1", path.strip('"'),
                                                                       "org.freedesktop.login1.Session"]
                  + list(args[1:]), check=True)


def set_idle(vm, sid, idle):
    """SetIdleHint as the session's user; returns logind's IdleSinceHint (µs, realtime)."""
    user_busctl(vm, sid, "call", "SetIdleHint", "b", "true" if idle else "false")
    return int(session_prop(vm, sid, "IdleSinceHint"))


def setup(vm):
    for prog, pkg in PACKAGES.items():
        check(vm.run(["sh", "-c", 'command -v "$0"', prog]).rc == 0,
              "%s missing: apt-get install %s (tools/deps vm)", prog, pkg)
    vm.copy_in(MODULE, "/lib/x86_64-linux-gnu/security/pam_mamori.so", mode=0o644)
    prof = os.path.join(SOURCE, "rules", "pam-configs")
    for p in os.listdir(prof):
        vm.copy_in(os.path.join(prof, p), "/usr/share/pam-configs/" + p)
    vm.run(["pam-auth-update", "--package", "--force"], check=True)
    vm.copy_in(I3LOCK_PAM.encode(), "/etc/pam.d/i3lock")
    vm.copy_in(CONFIG.encode(), CONFIG_PATH)
    vm.copy_in((SESSION_SCRIPT % {"d": DISPLAY}).encode(), "/usr/local/bin/gui-session", mode=0o755)
    vm.run(["install", "-d", "-m", "1777", "/tmp/.X11-unix"], check=True)
    vm.run(["systemctl", "restart", "mamori-policyd.socket"], check=False)
    vm.run(["systemctl", "stop", "mamori-policyd.service"], check=False)
    vm.run(["systemctl", "restart", "mamori-agent.service"], check=True)
    vm.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True)
    vm.run(["chpasswd"], input="%s:%s\n" % (USER, PASSWORD), check=True)
    vm.wait_for(lambda: b"idle_timeout=%d" % TIMEOUT in (vm.read("/run/mamori-agent/status") or b""),
                timeout=60, what="the agent's status with the test timeout")


def start_session(vm, locker):
    """A logind session of type x11 running the session script; returns its id."""
    vm.run(["rm", "-f", "/tmp/gui-session-id", "/tmp/gui-counter"])
    vm.run(["sh", "-c", "XDG_SESSION_TYPE=x11 XDG_SESSION_CLASS=user setsid runuser -l %s -c "
                        "'/usr/local/bin/gui-session %d' </dev/null >/tmp/gui-session.log 2>&1 &"
            % (USER, 1 if locker else 0)], check=True)
    sid = vm.wait_for(lambda: (vm.read("/tmp/gui-session-id") or b"").decode().strip() or None, timeout=180,
                      what="the graphical session's script (Xvfb up)")
    check(session_prop(vm, sid, "Type") == "x11" and session_prop(vm, sid, "Class") == "user",
          "session %s is %s/%s, want x11/user", sid, session_prop(vm, sid, "Type"), session_prop(vm, sid, "Class"))
    vm.wait_for(lambda: counter(vm) > 3, timeout=60, what="the counter running")
    vm.wait_for(lambda: "keep-awake" in vm.run(["systemd-inhibit", "--list", "--no-pager"]).stdout,
                timeout=60, what="the user's idle inhibitor")
    if locker:
        vm.wait_for(lambda: vm.run(["pgrep", "-u", USER, "-x", "xss-lock"]).rc == 0, timeout=60,
                    what="xss-lock running")
        time.sleep(2)  # xss-lock subscribes to logind's Lock signal asynchronously
    return sid


def end_session(vm, sid):
    # Thawed first (a failed check may leave it locked), so that it can end at once.
    vm.run(["sh", "-c", "for f in /sys/fs/cgroup/user.slice/user-*.slice/session-$0.scope/mamori-lock/cgroup.freeze;"
                        " do [ -e $f ] && echo 0 > $f; done", sid], check=False)
    vm.run(["loginctl", "terminate-session", sid], check=False)
    vm.wait_for(lambda: sid not in vm.run(["loginctl", "list-sessions", "--no-legend"]).stdout.split(),
                timeout=60, what="session %s gone" % sid)
    vm.run(["pkill", "-KILL", "-u", USER], check=False)
    vm.run(["rm", "-f", "/tmp/.X%d-lock" % DISPLAY, "/tmp/.X11-unix/X%d" % DISPLAY], check=False)


def lock_delay(vm, sid, seq0, what):
    """Idle from now; waits for the session.lock record; prints and checks the delay."""
    since = set_idle(vm, sid, True)
    lock = wait_record(vm, "session.lock", sid, after_seq=seq0, timeout=TIMEOUT + 60)
    delay = (lock["time_us"] - since) / 1e6
    print("# %s: locked %.2f s after IdleSinceHint (timeout %d s): %.2f s after the timeout"
          % (what, delay, TIMEOUT, delay - TIMEOUT), flush=True)
    check(TIMEOUT - 0.5 <= delay <= TIMEOUT + 5, "%s: lock %.2f s after going idle, want %d..%d s",
          what, delay, TIMEOUT, TIMEOUT + 5)
    return lock


def xdotool(vm, *args):
    vm.run(as_user(vm, USER) + ["env", "DISPLAY=:%d" % DISPLAY, "xdotool"] + list(args), check=True)


def locker_locks(vm):
    """R-IDLE-1, R-AUTH-3, R-EV-5: xss-lock + i3lock answer LockSession; i3lock unlocks
    only with the right password, through pam_mamori, which counts the wrong one."""
    setup(vm)
    sid = start_session(vm, locker=True)
    try:
        locker_cycle(vm, sid)
    finally:
        end_session(vm, sid)


def locker_cycle(vm, sid):
    seq0 = last_seq(vm)
    lock = lock_delay(vm, sid, seq0, "x11 session %s with xss-lock + i3lock" % sid)
    check(lock["fields"]["action"] == "locker" and lock["fields"]["session_type"] == "x11",
          "lock record %r", lock["fields"])
    check(vm.run(["pgrep", "-u", USER, "-x", "i3lock"]).rc == 0, "i3lock is not running")
    check(session_prop(vm, sid, "LockedHint") == "yes", "LockedHint not set")
    # A wrong password typed into i3lock: refused, counted by pam_mamori, still locked.
    f0 = failures(vm)
    xdotool(vm, "type", "--delay", "60", "not-the-password")
    xdotool(vm, "key", "Return")
    vm.wait_for(lambda: failures(vm) == f0 + 1, timeout=60, what="pam_mamori counting i3lock's wrong password")
    fail = [r for r in records(vm, "auth.fail") if r["seq"] > seq0 and r["fields"].get("user") == USER]
    check(fail and fail[-1]["fields"].get("service") == "i3lock", "auth.fail of i3lock: %r", fail)
    time.sleep(3)  # i3lock shows "wrong!" a while
    check(session_prop(vm, sid, "LockedHint") == "yes", "unlocked by a wrong password")
    check(vm.run(["pgrep", "-u", USER, "-x", "i3lock"]).rc == 0, "i3lock ended on a wrong password")
    check(find_record(vm, "session.unlock", sid, seq0) is None, "session.unlock after a wrong password")
    # The right one: i3lock ends, xss-lock clears LockedHint, the agent records the unlock.
    xdotool(vm, "type", "--delay", "60", PASSWORD)
    xdotool(vm, "key", "Return")
    un = wait_record(vm, "session.unlock", sid, after_seq=seq0)
    check(un["fields"]["how"] == "locker", "unlock record %r", un["fields"])
    check(session_prop(vm, sid, "LockedHint") == "no", "LockedHint still set")
    # The right password gave back the attempt pam_mamori reserved; the wrong one stays
    # counted: a success reported by a caller that is not root (i3lock runs as the user)
    # does not reset the count (policyd/auth.c settle_success).
    check(failures(vm) == f0 + 1, "pam_mamori's failures %d after the right password, want %d", failures(vm),
          f0 + 1)
    vm.run(as_user(vm, "mamori-t-admin") + [MEDIACTL, "user", "unlock", USER], check=True)


KEYS = {"#": ["shift", "3"], "-": ["minus"], "\n": ["ret"]}


def type_keys(vm, text):
    """Types on the guest's USB keyboard (US layout, the console's default)."""
    for ch in text:
        keys = KEYS.get(ch) or (["shift", ch.lower()] if ch.isupper() else [ch])
        vm.send_keys(keys)
        time.sleep(0.05)


def vt_screen(vm, tty):
    """The text on a VT (/dev/vcsuN: one UTF-32 character per cell)."""
    b = vm.read("/dev/vcsu" + tty[len("/dev/tty"):]) or b""
    return b.decode("utf-32-le", "replace")


def fallback_locks(vm):
    """R-IDLE-1, R-AUTH-3, R-EV-5: no locker answers LockSession; after LOCKER_WAIT the
    agent freezes the session, prompts on a VT of its own (switched to), counts a wrong
    password, unlocks with the right one, and the session's programs run on."""
    kbd = vm.plug_keyboard()
    sid = None
    try:
        sid = start_session(vm, locker=False)
        seq0 = last_seq(vm)
        prev = (vm.read("/sys/class/tty/tty0/active") or b"").decode().strip()
        lock = lock_delay(vm, sid, seq0, "x11 session %s, no locker (agent's fallback)" % sid)
        f = lock["fields"]
        check(f["action"] == "lock-no-locker" and f["tty"].startswith("/dev/tty"), "lock record %r", f)
        # A locker had its chance first: LockSession at the timeout, then LOCKER_WAIT.
        delay = (lock["time_us"] - int(session_prop(vm, sid, "IdleSinceHint"))) / 1e6
        check(delay >= TIMEOUT + LOCKER_WAIT - 0.5, "fallback %.2f s after going idle: before the locker's %.1f s",
              delay, LOCKER_WAIT)
        tty = f["tty"]
        active = (vm.read("/sys/class/tty/tty0/active") or b"").decode().strip()
        check("/dev/" + active == tty, "the prompt's VT %s is not in front (%s is)", tty, active)
        uid = vm.run(["id", "-u", USER], check=True).stdout.strip()
        ev = vm.read("/sys/fs/cgroup/user.slice/user-%s.slice/session-%s.scope/mamori-lock/cgroup.events"
                     % (uid, sid)) or b""
        check(b"frozen 1" in ev, "lock cgroup not frozen: %r", ev)
        c1 = counter(vm)
        time.sleep(2)
        check(counter(vm) == c1, "the counter ran while locked (%d -> %d)", c1, counter(vm))
        check(session_prop(vm, sid, "LockedHint") == "yes", "LockedHint not set by the agent")
        vm.wait_for(lambda: "assword" in vt_screen(vm, tty), timeout=60, what="the password prompt on " + tty)
        # A wrong password: refused, counted, recorded; still frozen.
        f0 = failures(vm)
        type_keys(vm, "not-the-password\n")
        wait_record(vm, "session.unlock.failed", sid, after_seq=seq0)
        check(failures(vm) == f0 + 1, "pam_mamori failures %d -> %d, want +1", f0, failures(vm))
        check(counter(vm) == c1, "the counter ran after a wrong password")
        # ^D at the prompt ends its input: not a hang-up, the session stays locked.
        vm.wait_for(lambda: vt_screen(vm, tty).count("assword") >= 2, timeout=60, what="the prompt again")
        vm.send_keys(["ctrl", "d"])
        time.sleep(3)
        check(find_record(vm, "session.unlock", sid, seq0) is None, "^D at the prompt unlocked the session")
        check(counter(vm) == c1, "the counter ran after ^D")
        vm.wait_for(lambda: vm.run(["pgrep", "-f", "mamori-lock --tty " + tty]).rc == 0, timeout=30,
                    what="a prompt on %s again" % tty)
        time.sleep(2)
        type_keys(vm, PASSWORD + "\n")
        un = wait_record(vm, "session.unlock", sid, after_seq=seq0)
        check(un["fields"]["how"] == "password", "unlock record %r", un["fields"])
        vm.wait_for(lambda: counter(vm) > c1, timeout=30, what="the counter running again after the unlock")
        check(session_prop(vm, sid, "LockedHint") == "no", "LockedHint still set after the unlock")
        back = (vm.read("/sys/class/tty/tty0/active") or b"").decode().strip()
        check(back == prev, "VT %s in front after the unlock, want %s again", back, prev)
        check(failures(vm) == 0, "failures not reset by the right password: %d", failures(vm))
        st = (vm.read("/run/mamori-agent/status") or b"").decode()
        check("idle_locked=0" in st, "status still counts a lock: %r", st)
    finally:
        if sid:
            end_session(vm, sid)
        kbd.pull()


if __name__ == "__main__":
    sys.exit(run_scenarios([locker_locks, fallback_locks], name="vm-graphical", install_build=True,
                           enable=["mamori-policyd.socket", "mamori-agent.service"]))
