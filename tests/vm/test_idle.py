#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The idle lock (issue 8) with real systemd, logind, sshd and PAM in the guest.

A text session (login -f on a pty) and an SSH session (sshd in the guest, key login
from 127.0.0.1 on a pty) are each left idle past a 10 s test timeout: each must lock
within 5 s of the timeout (R-IDLE-1; the measured delays are printed), a counter running
in it must stop while locked and run again after the unlock, a wrong password at the
lock prompt must be refused and counted by pam_mamori (R-AUTH-1), the right one must
unlock, and an idle inhibitor held by the user must not stop the lock. The second lock of
the text session is undone by an administrator at the prompt instead (after an empty
password; a name outside the administrators' group is refused first). Every lock,
unlock and refused unlock is evidence (R-EV-5). The agent runs with LANGUAGE=ja, as on a
Japanese terminal: the prompt's texts come through gettext (po/ja.po), English under them.

One boot: the build installed, policyd's socket and the agent enabled, pam_mamori in
the guest's common-auth (pam-auth-update, as tests/pam/vm_pam.py does)."""
import json
import re
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamori_vm import check, run_scenarios  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("MAMORI_SOURCE_ROOT") or os.path.join(HERE, "..", "..")
BUILD = os.path.abspath(os.environ.get("MAMORI_BUILD_ROOT") or os.path.join(SOURCE, "build"))
MEDIACTL = os.path.join(BUILD, "mediactl", "mediactl")
MODULE = os.path.join(BUILD, "pam_module", "pam_mamori.so")
DRIVER = os.path.join(HERE, "pty_session.py")
CONFIG_PATH = "/usr/local/etc/mamori/mamori.conf"
TIMEOUT = 15
USER, PASSWORD = "idleuser", "Idle#Pass7"
CONFIG = "idle: { timeout = %d; };\nauth: { deny = 5; unlock_time = 900; };\n" % TIMEOUT
BANNER = b"This session was locked"
ADMIN, ADMIN_PASSWORD = "idleboss", "Boss#Pass9"
# The system locale a Japanese terminal's agent runs with (LANGUAGE: no ja_JP locale needed).
LOCALE_DROPIN = "[Service]\nEnvironment=LANG=C.UTF-8 LANGUAGE=ja\n"
PW_PROMPT = "パスワード:".encode()  # pam_unix's "Password: " in Linux-PAM's Japanese catalogue


def as_user(vm, user):
    r = vm.run(["id", "-g", user], check=True)
    return ["setpriv", "--reuid=" + user, "--regid=" + r.stdout.strip(), "--init-groups"]


def records(vm, type_):
    r = vm.run(as_user(vm, "mamori-t-auditor") + [MEDIACTL, "log", "--type", type_, "--format", "json",
                                                  "--limit", "100000"])
    return sorted(json.loads(r.stdout or "[]"), key=lambda x: x["seq"]) if r.rc == 0 else []


def find_record(vm, type_, session, after_seq):
    for rec in records(vm, type_):
        if rec["seq"] > after_seq and rec["type"] == type_ and rec["fields"].get("session") == session:
            return rec
    return None


def wait_record(vm, type_, session, after_seq=0, timeout=60):
    return vm.wait_for(lambda: find_record(vm, type_, session, after_seq), timeout=timeout, interval=0.5,
                       what="%s for session %s" % (type_, session))


def last_seq(vm):
    r = records(vm, "session")
    return r[-1]["seq"] if r else 0


def failures(vm, user=USER):
    r = vm.run(as_user(vm, "mamori-t-admin") + [MEDIACTL, "user", "status", user, "--format", "json"], check=True)
    return json.loads(r.stdout)["failures"]


class Term:
    """A session on a pty in the guest, driven through pty_session.py."""

    def __init__(self, vm, name, argv):
        self.vm, self.prefix = vm, "/tmp/" + name
        vm.run(["rm", "-f", self.prefix + ".in", self.prefix + ".out", self.prefix + ".lastin"])
        vm.run(["sh", "-c", 'd=$0; p=$1; shift; setsid python3 "$d" "$p" -- "$@" >/dev/null 2>&1 </dev/null &',
                DRIVER, self.prefix] + argv, check=True)
        vm.wait_for(lambda: vm.exists(self.prefix + ".in"), timeout=30, what="the pty driver")

    def output(self):
        return self.vm.read(self.prefix + ".out") or b""

    def type(self, text):
        self.vm.run(["dd", "of=" + self.prefix + ".in", "status=none"], input=text, check=True)

    def wait_output(self, needle, start=0, timeout=60):
        """Waits for needle at or after start; returns the offset just after it."""
        def find():
            i = self.output().find(needle, start)
            return i + len(needle) if i >= 0 else None
        return self.vm.wait_for(find, timeout=timeout, interval=0.3, what="%r on %s" % (needle, self.prefix))

    def shell_alive(self, tag, timeout=60):
        n = len(self.output())
        self.type("echo alive-%s-$((6*7))\n" % tag)
        self.wait_output(("alive-%s-42" % tag).encode(), start=n, timeout=timeout)

    def last_input_us(self):
        return int(self.vm.read(self.prefix + ".lastin").decode())


def setup(vm):
    vm.copy_in(MODULE, "/lib/x86_64-linux-gnu/security/pam_mamori.so", mode=0o644)
    prof = os.path.join(SOURCE, "rules", "pam-configs")
    for p in os.listdir(prof):
        vm.copy_in(os.path.join(prof, p), "/usr/share/pam-configs/" + p)
    vm.run(["pam-auth-update", "--package", "--force"], check=True)
    vm.copy_in(CONFIG.encode(), CONFIG_PATH)
    vm.run(["mkdir", "-p", "/etc/systemd/system/mamori-agent.service.d"], check=True)
    vm.copy_in(LOCALE_DROPIN.encode(), "/etc/systemd/system/mamori-agent.service.d/locale.conf")
    vm.run(["systemctl", "daemon-reload"], check=True)
    vm.run(["systemctl", "restart", "mamori-policyd.socket"], check=False)
    vm.run(["systemctl", "stop", "mamori-policyd.service"], check=False)
    vm.run(["systemctl", "restart", "mamori-agent.service"], check=True)
    vm.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
    vm.run(["chpasswd"], input="%s:%s\n" % (USER, PASSWORD), check=True)
    vm.run(["groupadd", "-f", "mamori-admin"], check=True)
    vm.run(["useradd", "-m", "-G", "mamori-admin", "-s", "/bin/bash", ADMIN], check=True)
    vm.run(["chpasswd"], input="%s:%s\n" % (ADMIN, ADMIN_PASSWORD), check=True)
    vm.wait_for(lambda: b"idle_timeout=%d" % TIMEOUT in (vm.read("/run/mamori-agent/status") or b""),
                timeout=60, what="the agent's status with the test timeout")


def session_of(vm, tty=None, remote=False):
    """The logind session of USER on tty (or the remote one)."""
    def find():
        r = vm.run(["loginctl", "list-sessions", "--no-legend"])
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) >= 3 and f[2] == USER:
                sid = f[0]
                p = vm.run(["loginctl", "show-session", sid, "-p", "Remote", "-p", "TTY", "-p", "State"]).stdout
                if ("Remote=yes" in p) == remote and "State=closing" not in p:
                    return sid
        return None
    return vm.wait_for(find, timeout=60, what="a logind session of %s (remote=%s)" % (USER, remote))


def diag(vm):
    """Where the agent is, when it does not act."""
    print("# " + vm.sh("p=$(systemctl show -p MainPID --value mamori-agent); echo agent $p; "
                       "cat /proc/$p/wchan; echo; cat /proc/$p/syscall; cat /proc/$p/stack; ls -l /proc/$p/fd; "
                       "cat /run/mamori-agent/status; loginctl list-sessions").stdout.replace("\n", "\n# "),
          flush=True)


def counter(vm):
    b = vm.read("/tmp/counter-" + USER)
    return int(b.decode().strip() or 0) if b else 0


def lock_cycle(vm, term, sid, what):
    """The common part: idle, locked in time, frozen, wrong password counted, unlocked."""
    term.shell_alive("start", timeout=180)  # the first login on a busy host is slow
    n = len(term.output())
    seq0 = last_seq(vm)
    term.type("(i=0; while :; do i=$((i+1)); echo $i > /tmp/counter-%s; sleep 0.2; done) &\n" % USER)
    # An idle inhibitor held by the user (R-IDLE-1: it must not stop the lock).
    term.type("systemd-inhibit --what=idle --who=test --why=keep-awake sleep 1000 &\n")
    term.shell_alive("last")  # the last input: the idle time runs from here
    last_in = term.last_input_us()
    vm.wait_for(lambda: counter(vm) > 3, timeout=30, what="the counter running")
    vm.wait_for(lambda: "keep-awake" in vm.run(["systemd-inhibit", "--list", "--no-pager"]).stdout,
                timeout=30, what="the user's idle inhibitor")
    try:
        lock = wait_record(vm, "session.lock", sid, after_seq=seq0, timeout=TIMEOUT + 60)
    except Exception:
        diag(vm)
        raise
    delay = (lock["time_us"] - last_in) / 1e6
    print("# %s: locked %.2f s after the last input (timeout %d s): %.2f s after the timeout"
          % (what, delay, TIMEOUT, delay - TIMEOUT), flush=True)
    check(TIMEOUT - 0.5 <= delay <= TIMEOUT + 5, "%s: lock %.2f s after the last input, want %d..%d s",
          what, delay, TIMEOUT, TIMEOUT + 5)
    f = lock["fields"]
    check(f["user"] == USER and f["action"] == "lock" and int(f["idle_seconds"]) >= TIMEOUT - 1,
          "lock record %r", f)
    pos = term.wait_output(BANNER, start=n, timeout=30)
    # Frozen: the counter stands still, and the cgroup says so.
    c1 = counter(vm)
    time.sleep(2)
    check(counter(vm) == c1, "%s: the counter ran while locked (%d -> %d)", what, c1, counter(vm))
    ev = vm.read("/sys/fs/cgroup/user.slice/user-%s.slice/session-%s.scope/mamori-lock/cgroup.events"
                 % (vm.run(["id", "-u", USER]).stdout.strip(), sid)) or b""
    check(b"frozen 1" in ev, "%s: lock cgroup not frozen: %r", what, ev)
    out = vm.run(as_user(vm, USER) + [MEDIACTL, "status"]).stdout
    check(re.search(r"idle lock: watching, timeout %d s, \d+ sessions watched, 1 locked" % TIMEOUT, out),
          "mediactl status does not show the lock: %r", out)
    # A wrong password: refused, counted by pam_mamori (R-AUTH-1), recorded.
    f0 = failures(vm)
    pos = term.wait_output(b"assword", start=pos)
    term.type("not-the-password\n")
    pos = term.wait_output("認証に失敗しました".encode(), start=pos, timeout=60)
    wait_record(vm, "session.unlock.failed", sid, after_seq=seq0)
    check(failures(vm) == f0 + 1, "%s: pam_mamori failures %d -> %d, want +1", what, f0, failures(vm))
    check(counter(vm) == c1, "%s: the counter ran after a wrong password", what)
    # The right one unlocks; the programs run on.
    term.wait_output(b"assword", start=pos)
    term.type(PASSWORD + "\n")
    un = wait_record(vm, "session.unlock", sid, after_seq=seq0)
    check(un["fields"]["how"] == "password", "unlock record %r", un["fields"])
    vm.wait_for(lambda: counter(vm) > c1, timeout=30, what="the counter running again after the unlock")
    term.shell_alive("after")
    check(failures(vm) == 0, "failures not reset by the right password: %d", failures(vm))
    st = (vm.read("/run/mamori-agent/status") or b"").decode()
    check("idle_locked=0" in st, "status still counts a lock: %r", st)
    return un["seq"]


def relock(vm, term, sid, seq0):
    """Idle again after an unlock: it locks again (a lock cgroup made anew), and this time an
    administrator unlocks it at the prompt (R-IDLE-1: "only the session's user, or an
    administrator"), through the same pam_mamori stack; the record names them (R-EV-5)."""
    n = len(term.output())
    try:
        wait_record(vm, "session.lock", sid, after_seq=seq0, timeout=TIMEOUT + 60)
    except Exception:
        diag(vm)
        raise
    pos = term.wait_output(BANNER, start=n, timeout=30)
    check("このセッションは無操作のためロックされています".encode() in term.output()[n:pos + 200],
          "the banner is not in Japanese first: %r", term.output()[n:pos + 200])
    pos = term.wait_output(PW_PROMPT, start=pos)
    c1 = counter(vm)
    time.sleep(1)
    check(counter(vm) == c1, "the counter ran while locked the second time")
    # An empty password (a failed attempt), then a name outside the administrators: refused.
    term.type("\n")
    name_prompt = "管理者のユーザー名".encode()
    pos = term.wait_output(name_prompt, start=pos, timeout=60)
    term.type(USER + "\n")
    pos = term.wait_output("管理者のアカウントではありません".encode(), start=pos, timeout=60)
    def refusal():
        for r in records(vm, "session.unlock.failed"):
            if r["seq"] > seq0 and r["fields"].get("session") == sid and \
                    r["fields"].get("reason") == "not-an-administrator":
                return r
        return None
    f = vm.wait_for(refusal, timeout=60, what="a not-an-administrator refusal")
    # What was typed is not recorded: it may have been a password.
    check([k for k, v in f["fields"].items() if v == USER] == ["user"], "refusal record %r", f["fields"])
    # Again: the administrator's name (not echoed) and their own password.
    pos = term.wait_output(PW_PROMPT, start=pos, timeout=60)
    term.type("\n")
    pos = term.wait_output(name_prompt, start=pos, timeout=60)
    term.type(ADMIN + "\n")
    pos = term.wait_output(PW_PROMPT, start=pos, timeout=60)
    check(ADMIN.encode() not in term.output()[n:], "the administrator's name was echoed")
    term.type(ADMIN_PASSWORD + "\n")
    un = wait_record(vm, "session.unlock", sid, after_seq=seq0)
    check(un["fields"]["how"] == "administrator" and un["fields"].get("by") == ADMIN, "unlock record %r",
          un["fields"])
    term.wait_output("管理者が解除しました".encode(), start=pos, timeout=30)
    vm.wait_for(lambda: counter(vm) > c1, timeout=30, what="the counter running after the administrator's unlock")
    term.shell_alive("again")


def text_session_locks(vm):
    """R-IDLE-1, R-AUTH-1, R-EV-5: a console-like session (login -f on a pty), locked twice."""
    setup(vm)
    term = Term(vm, "tty1", ["login", "-f", USER])
    sid = session_of(vm)
    seq = lock_cycle(vm, term, sid, "text session %s" % sid)
    relock(vm, term, sid, seq)
    term.type("kill %1 %2; exit\n")


def ssh_session_locks(vm):
    """R-IDLE-1 over SSH: sshd's own processes keep carrying the pty, the user's freeze."""
    vm.run(["systemctl", "start", "ssh.service"], check=True)
    vm.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/tmp/idlekey"], check=True)
    home = "/home/" + USER
    vm.run(["install", "-d", "-m", "0700", "-o", USER, "-g", USER, home + "/.ssh"], check=True)
    vm.run(["install", "-m", "0600", "-o", USER, "-g", USER, "/tmp/idlekey.pub", home + "/.ssh/authorized_keys"],
           check=True)
    term = Term(vm, "ssh1", ["ssh", "-tt", "-i", "/tmp/idlekey", "-o", "StrictHostKeyChecking=no",
                             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", USER + "@127.0.0.1"])
    sid = session_of(vm, remote=True)
    lock_cycle(vm, term, sid, "ssh session %s" % sid)
    term.type("kill %1 %2; exit\n")
    vm.run(["systemctl", "stop", "ssh.service"], check=False)


def agent_restart_keeps_lock(vm):
    """Fail closed: the agent restarted while a session is locked finds it frozen and
    prompts again; the programs stay frozen until the password."""
    term = Term(vm, "tty2", ["login", "-f", USER])
    sid = session_of(vm)
    term.shell_alive("start", timeout=180)
    seq0 = last_seq(vm)
    term.type("(i=0; while :; do i=$((i+1)); echo $i > /tmp/counter-%s; sleep 0.2; done) &\n" % USER)
    term.shell_alive("last")
    try:
        wait_record(vm, "session.lock", sid, after_seq=seq0, timeout=TIMEOUT + 60)
    except Exception:
        diag(vm)
        raise
    n = term.wait_output(BANNER, timeout=30)
    vm.run(["systemctl", "restart", "mamori-agent.service"], check=True)
    c1 = counter(vm)
    m = term.wait_output(BANNER, start=n, timeout=60)  # the new agent's prompt
    time.sleep(1)
    check(counter(vm) == c1, "the counter ran across the agent's restart")
    term.wait_output(b"assword", start=m)
    time.sleep(1)
    term.type(PASSWORD + "\n")
    un = wait_record(vm, "session.unlock", sid, after_seq=seq0)
    check(un["fields"]["how"] == "password", "unlock record %r", un["fields"])
    vm.wait_for(lambda: counter(vm) > c1, timeout=30, what="the counter running after the unlock")
    term.type("kill %1; exit\n")


def remote_terminate(vm):
    """idle.remote_action = "terminate": an idle SSH session is ended and recorded."""
    vm.copy_in((CONFIG.replace("timeout = %d;" % TIMEOUT, 'timeout = %d; remote_action = "terminate";' % TIMEOUT))
               .encode(), CONFIG_PATH)
    vm.run(["systemctl", "restart", "mamori-agent.service"], check=True)
    vm.run(["systemctl", "start", "ssh.service"], check=True)
    term = Term(vm, "ssh2", ["ssh", "-tt", "-i", "/tmp/idlekey", "-o", "StrictHostKeyChecking=no",
                             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", USER + "@127.0.0.1"])
    sid = session_of(vm, remote=True)
    seq0 = last_seq(vm)
    term.shell_alive("start", timeout=180)
    rec = wait_record(vm, "session.lock", sid, after_seq=seq0, timeout=TIMEOUT + 60)
    check(rec["fields"]["action"] == "terminate", "record %r", rec["fields"])
    term.wait_output(b"closed", timeout=60)
    vm.copy_in(CONFIG.encode(), CONFIG_PATH)
    vm.run(["systemctl", "restart", "mamori-agent.service"], check=True)
    vm.run(["systemctl", "stop", "ssh.service"], check=False)


def exempt_host_recorded(vm):
    """R-IDLE-2: an exempt host records idle.exempt with approver and reason at start, shows
    it in mediactl status, and locks nothing."""
    vm.copy_in((CONFIG + 'idle: { exempt = true; exempt_approver = "CISO 佐藤"; exempt_reason = "kiosk"; };\n')
               .replace("idle: { timeout = %d; };\n" % TIMEOUT, "").encode(), CONFIG_PATH)
    seq0 = last_seq(vm)
    vm.run(["systemctl", "restart", "mamori-agent.service"], check=True)

    def rec():
        for r in records(vm, "idle.exempt"):
            if r["seq"] > seq0:
                return r
        return None
    r = vm.wait_for(rec, timeout=60, what="an idle.exempt record")
    check(r["fields"].get("approver") == "CISO 佐藤" and r["fields"].get("reason") == "kiosk", "record %r", r)
    out = vm.run(as_user(vm, USER) + [MEDIACTL, "status"]).stdout
    check("idle lock: exempt (approved by CISO 佐藤: kiosk)" in out, "mediactl status: %r", out)
    vm.copy_in(CONFIG.encode(), CONFIG_PATH)
    vm.run(["systemctl", "restart", "mamori-agent.service"], check=True)
    vm.wait_for(lambda: b"idle=watching" in (vm.read("/run/mamori-agent/status") or b""), timeout=60,
                what="the agent watching again")


if __name__ == "__main__":
    sys.exit(run_scenarios([text_session_locks, ssh_session_locks, agent_restart_keeps_lock, remote_terminate,
                           exempt_host_recorded], name="vm-idle", install_build=True,
                           enable=["mamori-policyd.socket", "mamori-agent.service"]))
