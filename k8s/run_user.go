package k8s

import (
	"fmt"
	"strconv"
	"strings"

	"code.cloudfoundry.org/bbs/models"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/actions"
)

// A recipe's run actions name the user each process runs as (CC: "vcap";
// a process's or task's own user; a docker image's USER or "root"). Garden
// starts each process as its user from outside the container; in a pod
// the runner can only start a process as itself, or switch when it runs as
// root (actions/user.go). So the pod runs as the recipe's user where its
// uid is known without the image: "vcap" is lrp.app_uid (CF's stacks give
// vcap uid 2000, Iris's default app_uid), a numeric user is its number. A
// recipe whose users only the image's /etc/passwd can tell (a name) or
// that asks for several uids runs its runner as root so that it switches,
// but only in a user namespace (hostUsers: false), where that root is no
// one on the node, and with SETUID, SETGID and CHOWN as its only
// capabilities.
// Elsewhere the pod runs as app_uid and the runner fails an action whose
// user it cannot be. Root is never granted for this: a recipe asking for
// root runs as the pod's policy says (root docker images where the
// operator allows them, else app_uid).

// switchUserCapabilities are all a switching runner needs: setgroups,
// setgid and setuid before it starts a process, chown for what it
// downloads for a user.
var switchUserCapabilities = []corev1.Capability{"SETUID", "SETGID", "CHOWN"}

// runRecipeAs sets container's user for recipe's run actions and returns
// the runner flags that go with it. rootAllowed is the pod's policy:
// container may run as its image's user, root included.
func (b *Builder) runRecipeAs(spec *corev1.PodSpec, container *corev1.Container, recipe *actions.Recipe, rootAllowed bool) []string {
	uids := map[int64]bool{}
	var uid int64
	var gid *int64
	for _, user := range recipeRunUsers(recipe) {
		userUID, userGID, ok := b.knownUser(user)
		if !ok {
			uids = nil
			break
		}
		if userUID == 0 {
			// The pod's policy decides; the runner runs it unprivileged
			// where root is not granted.
			continue
		}
		uids[userUID], uid = true, userUID
		if userGID != nil {
			gid = userGID
		}
	}
	if uids != nil && len(uids) <= 1 {
		if len(uids) == 1 {
			// Only where it differs from the pod's: an unchanged template
			// does not roll existing instances.
			pod := spec.SecurityContext
			if pod == nil || pod.RunAsUser == nil || *pod.RunAsUser != uid {
				ensureSecurityContext(container).RunAsUser = ptr.To(uid)
			}
			if gid != nil && (pod == nil || pod.RunAsGroup == nil || *pod.RunAsGroup != *gid) {
				ensureSecurityContext(container).RunAsGroup = gid
			}
		}
		return nil
	}
	if spec.HostUsers == nil || *spec.HostUsers {
		// Without a user namespace a root runner would be root on the
		// node: the pod stays app_uid and the runner refuses what it
		// cannot be.
		return nil
	}
	sc := ensureSecurityContext(container)
	sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot = ptr.To[int64](0), ptr.To[int64](0), ptr.To(false)
	if sc.Capabilities == nil {
		sc.Capabilities = &corev1.Capabilities{}
	}
	sc.Capabilities.Add = append(sc.Capabilities.Add, switchUserCapabilities...)
	if rootAllowed {
		return nil
	}
	return []string{"--demote-root-to", fmt.Sprintf("%d:%d", b.cfg.AppUID, b.cfg.AppUID)}
}

// knownUser is the uid (and gid, when given as a number) of user without
// the image's /etc/passwd, as Garden would resolve it.
func (b *Builder) knownUser(user string) (uid int64, gid *int64, ok bool) {
	name, group, hasGroup := strings.Cut(user, ":")
	switch name {
	case stackUser:
		uid = b.cfg.AppUID
	case "root":
		uid = 0
	default:
		n, err := strconv.ParseInt(name, 10, 32)
		if err != nil || n < 0 {
			return 0, nil, false
		}
		uid = n
	}
	if hasGroup {
		n, err := strconv.ParseInt(group, 10, 32)
		if err != nil || n < 0 {
			// A group name: only the image's /etc/group tells its gid.
			return 0, nil, false
		}
		gid = ptr.To(n)
	} else if name == stackUser {
		gid = ptr.To(b.cfg.AppUID)
	}
	return uid, gid, true
}

// recipeRunUsers are the users of every run action in recipe's setup,
// action and monitor.
func recipeRunUsers(recipe *actions.Recipe) []string {
	var users []string
	recipe.EachAction(func(action *models.Action) {
		if a := action.GetRunAction(); a != nil {
			users = append(users, a.User)
		}
	})
	return users
}

func ensureSecurityContext(container *corev1.Container) *corev1.SecurityContext {
	if container.SecurityContext == nil {
		container.SecurityContext = containerSecurityContext()
	}
	return container.SecurityContext
}
