package actions

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/moby/sys/user"
)

// A run action names the user its process runs as. CC sends "vcap" for
// buildpack and CNB apps, tasks and all staging; a process's or task's own
// `user` (one of CC's additional_allowed_process_users); for docker apps
// and tasks the image's USER from the staging's execution metadata, or
// "root" (a CNB task without one is "root" too). Garden resolves it in the
// container's root file system (guardian rundmc/users, with
// github.com/moby/sys/user): a name in /etc/passwd, a uid, or either with
// ":group"; a numeric uid needs no entry; "root" needs no passwd file at
// all; supplementary groups come from /etc/group; the process starts in the
// user's home, and runc sets HOME from passwd and Garden USER to the
// requested name when the environment has none.
//
// A pod cannot start each process as another user the way Garden does from
// outside the container, so the runner decides per process (identityFor):
//   - the runner already runs as the user's uid: it starts the process as
//     itself (the pod builder picks the pod's uid from the recipe, so this
//     is the usual case: "vcap" runs as lrp.app_uid, 2000 in Iris and in
//     CF's stacks);
//   - the runner runs as uid 0 (only a pod built for switching, under a
//     user namespace): it starts the process with the user's uid, gid and
//     groups, HOME and USER as Garden gives them;
//   - the user is root and the runner is not (Iris's policy runs root
//     images as app_uid unless the operator allows them), or a switching
//     pod was told to demote root: the process runs unprivileged;
//   - another user the runner cannot switch to (a docker image's named
//     USER without user namespaces): the process runs as the container's
//     uid, the way Iris runs that image's LRPs (a docker LRP's pod runs as
//     app_uid), and the runner logs it. Failing instead would break `cf
//     run-task` of docker apps whose web processes run fine.
//   - a name the root file system does not know fails the action with
//     Garden's error, as in Diego.
//
// A switching runner also extracts a download as its user's (Garden
// streams it in as that user); elsewhere a download's user is only logged.

// processIdentity is who one process runs as.
type processIdentity struct {
	// credential is nil when the process runs as the runner does.
	credential *syscall.Credential
	// home is a switched user's home directory.
	home string
	// notSwitched says why the process runs as the runner although its
	// user has another uid ("" when it does not).
	notSwitched string
	// env are HOME and USER as Garden gives a switched process; the
	// recipe's and the action's own variables come after them and win.
	env []string
}

// userResolver resolves run actions' users in the container's root file
// system.
type userResolver struct {
	// root is the root file system holding etc/passwd and etc/group ("/"
	// in a pod: the stack or docker image).
	root string
	// uid is the runner's own.
	uid int
	// demoteRoot, when set, is who a process asking for root runs as in a
	// runner that could grant it (a switching pod where root is not
	// allowed).
	demoteRoot *syscall.Credential
}

// identityFor is who a process of a run action with requested user runs
// as, or why it cannot run.
func (r userResolver) identityFor(requested string) (processIdentity, error) {
	execUser, err := r.lookup(requested)
	if err != nil {
		return processIdentity{}, err
	}
	switch {
	case execUser.Uid == 0 && r.uid != 0:
		// Root is not granted to this pod: it runs unprivileged.
		return processIdentity{}, nil
	case execUser.Uid == 0 && r.demoteRoot != nil:
		// HOME is the demoted uid's, as runc would give a container of
		// that uid ("/" where passwd has none); downloads stay where the
		// runner puts them.
		home := "/"
		if demoted, err := r.lookup(strconv.FormatUint(uint64(r.demoteRoot.Uid), 10)); err == nil && demoted.Home != "" {
			home = demoted.Home
		}
		return processIdentity{credential: r.demoteRoot, env: []string{"HOME=" + home, "USER=" + requested}}, nil
	case execUser.Uid == r.uid:
		return processIdentity{}, nil
	case r.uid != 0:
		return processIdentity{notSwitched: fmt.Sprintf("user %s (uid %d) runs as this container's uid %d: it cannot switch users without user namespaces", requested, execUser.Uid, r.uid)}, nil
	}
	groups := make([]uint32, 0, len(execUser.Sgids))
	for _, g := range execUser.Sgids {
		groups = append(groups, uint32(g)) // #nosec G115 -- ids are range-checked by the parser
	}
	home := execUser.Home
	if home == "" {
		home = "/"
	}
	return processIdentity{
		credential: &syscall.Credential{Uid: uint32(execUser.Uid), Gid: uint32(execUser.Gid), Groups: groups}, // #nosec G115
		home:       home,
		env:        []string{"HOME=" + home, "USER=" + requested},
	}, nil
}

// lookup resolves requested as Garden does: unknown names fail with
// "unable to find user <name>: no matching entries in passwd file".
func (r userResolver) lookup(requested string) (*user.ExecUser, error) {
	passwd := filepath.Join(r.root, "etc", "passwd")
	defaults := &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	if requested == "root" {
		// Garden runs root without a passwd file (scratch images).
		if _, err := os.Stat(passwd); errors.Is(err, fs.ErrNotExist) {
			return defaults, nil
		}
	}
	return user.GetExecUserPath(requested, defaults, passwd, filepath.Join(r.root, "etc", "group"))
}
