package actions

import (
	"os"
	"path/filepath"
	"syscall"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("run action users", func() {
	var root string

	BeforeEach(func() {
		root = GinkgoT().TempDir()
		Expect(os.Mkdir(filepath.Join(root, "etc"), 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte(
			"root:x:0:0:root:/root:/bin/sh\n"+
				"vcap:x:2000:2000::/home/vcap:/bin/bash\n"+
				"nginx:x:101:101::/var/cache/nginx:/sbin/nologin\n"), 0o644)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(root, "etc", "group"), []byte(
			"root:x:0:\nvcap:x:2000:\nnginx:x:101:\nwww:x:33:nginx\nlogs:x:4:nginx,vcap\n"), 0o644)).To(Succeed())
	})

	Context("in a container that runs as uid 2000 (the pod's app user)", func() {
		var users userResolver
		BeforeEach(func() { users = userResolver{root: root, uid: 2000} })

		It("runs a user of that uid, by name or by number, as the runner itself", func() {
			for _, requested := range []string{"vcap", "2000", "2000:2000", "vcap:logs"} {
				identity, err := users.identityFor(requested)
				Expect(err).NotTo(HaveOccurred(), requested)
				Expect(identity).To(Equal(processIdentity{}), requested)
			}
		})

		It("runs a user of another uid as the runner, as the image's LRPs run, saying why", func() {
			identity, err := users.identityFor("nginx")
			Expect(err).NotTo(HaveOccurred())
			Expect(identity).To(Equal(processIdentity{notSwitched: "user nginx (uid 101) runs as this container's uid 2000: it cannot switch users without user namespaces"}))
			identity, err = users.identityFor("1000:1000")
			Expect(err).NotTo(HaveOccurred())
			Expect(identity.credential).To(BeNil())
			Expect(identity.notSwitched).To(ContainSubstring("user 1000:1000 (uid 1000)"))
		})

		It("refuses a name the root file system does not know, with Garden's error", func() {
			_, err := users.identityFor("ContainerUser")
			Expect(err).To(MatchError("unable to find user ContainerUser: no matching entries in passwd file"))
		})

		It("runs root unprivileged, as the runner (root is not granted to this pod)", func() {
			for _, requested := range []string{"root", "0", "0:0"} {
				identity, err := users.identityFor(requested)
				Expect(err).NotTo(HaveOccurred(), requested)
				Expect(identity).To(Equal(processIdentity{}), requested)
			}
		})

		It("runs root without a passwd file (a scratch image), but no name", func() {
			users.root = GinkgoT().TempDir()
			identity, err := users.identityFor("root")
			Expect(err).NotTo(HaveOccurred())
			Expect(identity).To(Equal(processIdentity{}))
			_, err = users.identityFor("vcap")
			Expect(err).To(MatchError("unable to find user vcap: no matching entries in passwd file"))
		})
	})

	Context("in a container that runs as root (a pod built to switch users)", func() {
		var users userResolver
		BeforeEach(func() { users = userResolver{root: root, uid: 0} })

		It("switches to the user's uid, gid and groups, with its HOME and USER", func() {
			identity, err := users.identityFor("nginx")
			Expect(err).NotTo(HaveOccurred())
			Expect(identity.credential).To(Equal(&syscall.Credential{Uid: 101, Gid: 101, Groups: []uint32{33, 4}}))
			Expect(identity.env).To(Equal([]string{"HOME=/var/cache/nginx", "USER=nginx"}))
		})

		It("takes a numeric uid:gid without a passwd entry, with HOME /", func() {
			identity, err := users.identityFor("1234:5678")
			Expect(err).NotTo(HaveOccurred())
			Expect(identity.credential).To(Equal(&syscall.Credential{Uid: 1234, Gid: 5678, Groups: []uint32{}}))
			Expect(identity.env).To(Equal([]string{"HOME=/", "USER=1234:5678"}))
		})

		It("takes an explicit group over the user's own", func() {
			identity, err := users.identityFor("vcap:www")
			Expect(err).NotTo(HaveOccurred())
			Expect(identity.credential.Uid).To(BeEquivalentTo(2000))
			Expect(identity.credential.Gid).To(BeEquivalentTo(33))
		})

		It("runs root as itself, or as the demotion user when it has one", func() {
			identity, err := users.identityFor("root")
			Expect(err).NotTo(HaveOccurred())
			Expect(identity).To(Equal(processIdentity{}))

			demoted := &syscall.Credential{Uid: 2000, Gid: 2000}
			users.demoteRoot = demoted
			identity, err = users.identityFor("root")
			Expect(err).NotTo(HaveOccurred())
			Expect(identity.credential).To(BeIdenticalTo(demoted))
			Expect(identity.env).To(Equal([]string{"HOME=/home/vcap", "USER=root"}), "uid 2000's home")

			users.demoteRoot = &syscall.Credential{Uid: 3000, Gid: 3000}
			identity, err = users.identityFor("root")
			Expect(err).NotTo(HaveOccurred())
			Expect(identity.env).To(Equal([]string{"HOME=/", "USER=root"}), "a uid without a passwd entry")
		})
	})
})
