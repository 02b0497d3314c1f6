package actions

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// ErrUnknownArchiveFormat: a download that is neither tgz, zip nor tar
// (Diego's downloader only hands archives to the container).
var ErrUnknownArchiveFormat = errors.New("unknown archive format")

type archiveFormat int

const (
	formatTgz archiveFormat = iota + 1
	formatZip
	formatTar
)

// detectArchive looks at the content, not the name: Diego's downloader
// does the same (the URL rarely says what it serves).
func detectArchive(file string) (archiveFormat, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, err
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return formatTgz, nil
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return formatZip, nil
	case len(head) >= 263 && string(head[257:262]) == "ustar":
		return formatTar, nil
	}
	return 0, ErrUnknownArchiveFormat
}

// extractArchive unpacks file into dest, creating dest. Every path is
// resolved inside dest (os.Root), so an entry like ../../etc/passwd or a
// symlink pointing out of dest cannot write outside it. With an owner
// (a runner that switches users), what it creates belongs to the owner, as
// Garden streams a download in as the action's user.
func extractArchive(format archiveFormat, file, dest string, owner *syscall.Credential) error {
	_, statErr := os.Lstat(dest)
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	if owner != nil && errors.Is(statErr, fs.ErrNotExist) {
		if err := os.Lchown(dest, int(owner.Uid), int(owner.Gid)); err != nil {
			return err
		}
	}
	dir, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer dir.Close()
	root := &extractRoot{Root: dir, owner: owner}
	switch format {
	case formatZip:
		return extractZip(file, root)
	case formatTgz, formatTar:
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		var r io.Reader = f
		if format == formatTgz {
			gz, err := gzip.NewReader(f)
			if err != nil {
				return err
			}
			defer gz.Close()
			r = gz
		}
		return extractTar(tar.NewReader(r), root)
	}
	return ErrUnknownArchiveFormat
}

// extractRoot is the destination, and who owns what is extracted into it
// (nil: the runner).
type extractRoot struct {
	*os.Root
	owner *syscall.Credential
}

// own gives name to the owner.
func (r *extractRoot) own(name string) error {
	if r.owner == nil {
		return nil
	}
	return r.Lchown(name, int(r.owner.Uid), int(r.owner.Gid))
}

func extractTar(tr *tar.Reader, root *extractRoot) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name, ok := entryName(hdr.Name)
		if !ok {
			continue
		}
		mode := hdr.FileInfo().Mode()
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = mkdir(root, name, mode.Perm()|0o700)
		case tar.TypeReg:
			err = writeFile(root, name, mode.Perm(), tr)
		case tar.TypeSymlink:
			err = symlink(root, hdr.Linkname, name)
		case tar.TypeLink:
			target, ok := entryName(hdr.Linkname)
			if !ok {
				return fmt.Errorf("hard link %s to %q", hdr.Name, hdr.Linkname)
			}
			err = link(root, target, name)
		default:
			// Devices and FIFOs cannot be made unprivileged and have
			// no place in app bits or buildpacks.
			continue
		}
		if err == nil {
			err = root.own(name)
		}
		if err != nil {
			return fmt.Errorf("extracting %s: %w", hdr.Name, err)
		}
	}
}

func extractZip(file string, root *extractRoot) error {
	zr, err := zip.OpenReader(file)
	if err != nil {
		return err
	}
	defer zr.Close()
	for _, entry := range zr.File {
		name, ok := entryName(entry.Name)
		if !ok {
			continue
		}
		err := extractZipEntry(entry, name, root)
		if err == nil {
			err = root.own(name)
		}
		if err != nil {
			return fmt.Errorf("extracting %s: %w", entry.Name, err)
		}
	}
	return nil
}

func extractZipEntry(entry *zip.File, name string, root *extractRoot) error {
	mode := entry.Mode()
	if mode.IsDir() {
		return mkdir(root, name, mode.Perm()|0o700)
	}
	rc, err := entry.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	if mode&fs.ModeSymlink != 0 {
		target, err := io.ReadAll(io.LimitReader(rc, 4096))
		if err != nil {
			return err
		}
		return symlink(root, string(target), name)
	}
	perm := mode.Perm()
	if perm == 0 {
		// Zips made on Windows carry no Unix mode.
		perm = 0o644
	}
	return writeFile(root, name, perm, rc)
}

// entryName cleans an archive path to one relative to the destination;
// "." (the destination itself) is skipped.
func entryName(name string) (string, bool) {
	name = path.Clean("/" + strings.ReplaceAll(name, "\\", "/"))
	name = strings.TrimPrefix(name, "/")
	return name, name != "" && name != "."
}

func mkdir(root *extractRoot, name string, perm fs.FileMode) error {
	if err := root.MkdirAll(name, perm); err != nil {
		return err
	}
	return root.Chmod(name, perm)
}

func writeFile(root *extractRoot, name string, perm fs.FileMode, content io.Reader) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	// A symlink already at name must be replaced, not written through.
	if info, err := root.Lstat(name); err == nil && !info.Mode().IsRegular() {
		if err := root.RemoveAll(name); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	//nolint:gosec // archives come from CC's blobstore for this app; the pod's disk limit bounds them
	if _, err := io.Copy(f, content); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The umask must not narrow the archive's mode (executables!).
	return root.Chmod(name, perm)
}

func symlink(root *extractRoot, target, name string) error {
	if err := replaceable(root, name); err != nil {
		return err
	}
	return root.Symlink(target, name)
}

func link(root *extractRoot, target, name string) error {
	if err := replaceable(root, name); err != nil {
		return err
	}
	return root.Link(target, name)
}

// replaceable makes room for a link at name: its directory exists, and
// whatever stood at name is gone (a later archive entry wins, as tar does).
func replaceable(root *extractRoot, name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if _, err := root.Lstat(name); err == nil {
		return root.RemoveAll(name)
	}
	return nil
}
