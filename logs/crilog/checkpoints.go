package crilog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
)

// Checkpoints is a file-backed map from log path to Position, so a restarted
// agent resumes where it stopped. Get, Set, Delete and Save may be called
// from many goroutines.
type Checkpoints struct {
	file string

	mu        sync.Mutex
	positions map[string]Position
	changes   uint64 // counts Set and Delete calls that changed something

	saveMu  sync.Mutex // one Save at a time, so an older snapshot never replaces a newer one
	saved   uint64     // changes when the file was last written
	written bool       // the file holds the map as of saved
}

type checkpointFile struct {
	Positions map[string]Position `json:"positions"`
}

// OpenCheckpoints loads the checkpoints in file. A missing file is no
// checkpoints; a file that cannot be read as checkpoints is an error, so a
// caller decides between starting over (repeating lines) and stopping.
func OpenCheckpoints(file string) (*Checkpoints, error) {
	c := &Checkpoints{file: file, positions: map[string]Position{}}
	// A crash during Save can leave its temporary file behind.
	if stale, err := filepath.Glob(tempPattern(file)); err == nil {
		for _, name := range stale {
			_ = os.Remove(name)
		}
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoints: %w", err)
	}
	var cf checkpointFile
	if err := json.Unmarshal(data, &cf); err != nil {
		return nil, fmt.Errorf("checkpoints file %s is corrupt: %w", file, err)
	}
	for path, pos := range cf.Positions {
		if pos.Offset < 0 {
			return nil, fmt.Errorf("checkpoints file %s is corrupt: negative offset for %s", file, path)
		}
		c.positions[path] = pos
	}
	c.written = true
	return c, nil
}

// Get returns the Position saved for path.
func (c *Checkpoints) Get(path string) (Position, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pos, ok := c.positions[path]
	return pos, ok
}

// Set records pos for path; Save makes it durable.
func (c *Checkpoints) Set(path string, pos Position) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.positions[path]; ok && old == pos {
		return
	}
	c.positions[path] = pos
	c.changes++
}

// Delete forgets path, once its file is gone for good.
func (c *Checkpoints) Delete(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.positions[path]; !ok {
		return
	}
	delete(c.positions, path)
	c.changes++
}

// Paths lists the paths that have a Position, to find those whose files are
// gone.
func (c *Checkpoints) Paths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	paths := make([]string, 0, len(c.positions))
	for path := range c.positions {
		paths = append(paths, path)
	}
	return paths
}

// Save writes the checkpoints atomically: to a temporary file in the same
// directory, synced, then renamed over the file, so a crash leaves either
// the old or the new checkpoints, never a mix. It does nothing when nothing
// changed since the last Save.
func (c *Checkpoints) Save() error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()

	c.mu.Lock()
	changes := c.changes
	if c.written && changes == c.saved {
		c.mu.Unlock()
		return nil
	}
	snapshot := maps.Clone(c.positions)
	c.mu.Unlock()

	data, err := json.Marshal(checkpointFile{Positions: snapshot})
	if err != nil {
		return fmt.Errorf("encoding checkpoints: %w", err)
	}
	if err := writeAtomic(c.file, data); err != nil {
		return fmt.Errorf("saving checkpoints: %w", err)
	}
	c.saved, c.written = changes, true
	return nil
}

func tempPattern(file string) string { return file + ".tmp-*" }

func writeAtomic(file string, data []byte) (err error) {
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, filepath.Base(tempPattern(file)))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	// The rename itself is durable only once the directory is synced.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
