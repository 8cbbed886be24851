package invui

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/inventory"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry"
)

// Choices of the filter selects; the first means "any".
const anyChoice = "Any"

var (
	statusChoices  = []string{anyChoice, "active", "pending", "suspended", "lost", "revoked", "retired"}
	roleChoices    = []string{anyChoice, "primary", "backup"}
	problemChoices = []string{anyChoice, "Any problem", inventory.NoActive.Label(), inventory.NoPrimary.Label(),
		inventory.NoBackup.Label(), inventory.Unverified.Label(), inventory.Stale.Label(), inventory.IDPDrift.Label()}
)

// Columns of the user table.
var inventoryColumns = []column{
	{"Name", 150}, {"External ID", 110}, {"Email", 200}, {"Groups", 120}, {"Keys", 50}, {"Coverage", 270}, {"Last verified", 120},
}

// Inventory is the Inventory screen. Its widgets are fields so tests (and
// keyboard shortcuts) can reach them.
type Inventory struct {
	env *uikit.Env

	Root    fyne.CanvasObject
	Banner  *Banner
	Counts  *widget.Label
	Status  *widget.Label // loading progress, how old the data is, stale
	Search  *uikit.Entry
	Group   *widget.Select
	KeyStat *widget.Select
	KeyRole *widget.Select
	Problem *widget.Select
	Refresh *widget.Button
	Export  *widget.Button
	Table   *widget.Table
	// Detail shows the selected user; DetailKeys their keys.
	Detail     *widget.Label
	DetailKeys *widget.List
	detailBox  *fyne.Container

	// ChooseFile asks where to save the CSV (a file dialog by default).
	ChooseFile func(func(fyne.URIWriteCloser, error))
	// Options tune loading (page size, how old a verification may be).
	Options inventory.Options

	users    []inventory.User
	shown    []int
	filter   inventory.Filter
	selected int // index into users, -1 for none
	loadedAt time.Time
	complete bool // users holds a whole load
	verified bool // last verifications were readable
	loading  bool
	summary  inventory.Summary
	// firstPage is when the first rows of the last load were shown.
	firstPage time.Time
	loadStart time.Time
	cancel    context.CancelFunc
	// loaded is called after each load settles, exported after each CSV
	// export (tests wait on them).
	loaded, exported func(error)
}

// NewInventory builds the screen and starts loading.
func NewInventory(env *uikit.Env) *Inventory {
	v := newInventory(env)
	v.Load()
	return v
}

func newInventory(env *uikit.Env) *Inventory {
	v := &Inventory{env: env, selected: -1}
	v.ChooseFile = func(cb func(fyne.URIWriteCloser, error)) {
		d := dialog.NewFileSave(cb, env.Window)
		d.SetFileName("keydesk-inventory.csv")
		d.Show()
	}
	v.Banner = newBanner(func() { v.Load() })
	v.Counts = widget.NewLabel("")
	v.Counts.Wrapping = fyne.TextWrapWord
	v.Counts.TextStyle = fyne.TextStyle{Bold: true}
	v.Status = widget.NewLabel("")
	v.Status.Truncation = fyne.TextTruncateEllipsis

	v.Search = uikit.NewEntry()
	v.Search.SetPlaceHolder("Search name, email, external id or serial")
	v.Search.OnChanged = func(s string) { v.filter.Text = s; v.apply() }
	v.Group = widget.NewSelect([]string{anyChoice}, func(s string) {
		v.filter.Group = ""
		if s != anyChoice {
			v.filter.Group = s
		}
		v.apply()
	})
	v.Group.PlaceHolder = "Group"
	v.KeyStat = widget.NewSelect(statusChoices, func(s string) {
		v.filter.KeyStatus = ""
		if s != anyChoice {
			v.filter.KeyStatus = registry.KeyStatus(s)
		}
		v.apply()
	})
	v.KeyStat.PlaceHolder = "Key status"
	v.KeyRole = widget.NewSelect(roleChoices, func(s string) {
		v.filter.KeyRole = ""
		if s != anyChoice {
			v.filter.KeyRole = registry.KeyRole(s)
		}
		v.apply()
	})
	v.KeyRole.PlaceHolder = "Key role"
	v.Problem = widget.NewSelect(problemChoices, func(s string) {
		v.filter.Problems = problemOf(s)
		v.apply()
	})
	v.Problem.PlaceHolder = "Coverage"
	v.Refresh = widget.NewButtonWithIcon("Refresh", theme.ViewRefreshIcon(), func() { v.Load() })
	v.Export = widget.NewButtonWithIcon("Export CSV…", theme.DocumentSaveIcon(), v.exportCSV)

	v.Table = newTextTable(inventoryColumns, func() int { return len(v.shown) }, v.Cell)
	v.Table.OnSelected = func(id widget.TableCellID) {
		if id.Row >= 0 && id.Row < len(v.shown) {
			v.selectUser(v.shown[id.Row])
		}
	}

	v.Detail = widget.NewLabel("Select a user to see their keys.")
	v.DetailKeys = widget.NewList(
		func() int {
			if v.selected < 0 {
				return 0
			}
			return len(v.users[v.selected].Keys)
		},
		func() fyne.CanvasObject {
			return widget.NewLabel("serial 00000000 · primary · active\nlast verified")
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if v.selected < 0 || i >= len(v.users[v.selected].Keys) {
				return
			}
			o.(*widget.Label).SetText(v.keyLine(v.users[v.selected].Keys[i]))
		})
	v.DetailKeys.HideSeparators = false

	filters := container.NewGridWithColumns(4, v.Group, v.KeyStat, v.KeyRole, v.Problem)
	bar := container.NewBorder(nil, nil, nil, container.NewHBox(v.Refresh, v.Export), v.Search)
	top := container.NewVBox(v.Banner.Root, v.Counts, bar, filters)
	v.detailBox = container.NewBorder(container.NewVBox(widget.NewLabelWithStyle("Selected user", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), v.Detail), nil, nil, nil, v.DetailKeys)
	split := container.NewHSplit(v.Table, v.detailBox)
	split.Offset = 0.72
	v.Root = container.NewBorder(top, v.Status, nil, nil, split)
	return v
}

func problemOf(choice string) inventory.Problem {
	if choice == "Any problem" {
		var all inventory.Problem
		for _, p := range inventory.Problems {
			all |= p
		}
		return all
	}
	for _, p := range inventory.Problems {
		if p.Label() == choice {
			return p
		}
	}
	return 0
}

// Load reads the registry again in the background. The first load fills
// the table page by page; later ones keep the old view until the new one
// is complete.
func (v *Inventory) Load() {
	if v.loading {
		return
	}
	v.loading = true
	v.loadStart = time.Now()
	v.Refresh.Disable()
	first := len(v.users) == 0
	if first {
		v.complete = false
	}
	v.Status.SetText("Loading users from the registry…")
	opt := v.Options
	var fresh []inventory.User
	var inv *inventory.Inventory
	v.cancel = v.env.Go(func(ctx context.Context) error {
		reg, err := v.env.Registry(ctx)
		if err != nil {
			return err
		}
		var got int
		inv, err = inventory.Load(ctx, reg, opt, func(page []inventory.User) {
			got += len(page)
			n := got
			uikit.Do(func() {
				if first {
					fresh = append(fresh, page...)
					inventory.SortByName(fresh)
					v.users = fresh
					if v.firstPage.Before(v.loadStart) {
						v.firstPage = time.Now()
					}
					v.verified = false
					v.dataChanged()
				}
				v.Status.SetText(fmt.Sprintf("Loading… %s so far", uikit.Count(n, "user", "users")))
			})
		})
		return err
	}, func(err error) {
		v.loading = false
		v.Refresh.Enable()
		if err != nil {
			v.Banner.Show(err)
			if first && len(v.users) > 0 {
				v.Status.SetText(fmt.Sprintf("Incomplete: %s read before the registry stopped answering.", uikit.Count(len(v.users), "user", "users")))
			} else {
				v.Status.SetText(staleNote(v.loadedAt))
			}
			v.dataChanged()
		} else {
			v.Banner.Hide()
			inventory.SortByName(inv.Users)
			v.users = inv.Users
			v.verified = inv.Verifications
			v.loadedAt = inv.At
			v.complete = true
			v.dataChanged()
			note := ""
			if !inv.Verifications {
				note = " Last verifications come from the audit log, which only an admin token may read."
			}
			v.Status.SetText(fmt.Sprintf("%s, read at %s.%s", uikit.Count(len(v.users), "user", "users"), inv.At.Local().Format("15:04:05"), note))
		}
		if v.loaded != nil {
			v.loaded(err)
		}
	})
}

// dataChanged recounts after the users changed, then applies the filter.
func (v *Inventory) dataChanged() {
	v.summary = inventory.Summarise(v.users)
	groups := append([]string{anyChoice}, inventory.Groups(v.users)...)
	if strings.Join(groups, "\x00") != strings.Join(v.Group.Options, "\x00") {
		v.Group.SetOptions(groups)
	}
	v.apply()
}

// apply filters the users again and refreshes the counts, table and detail.
func (v *Inventory) apply() {
	var selID string
	if v.selected >= 0 && v.selected < len(v.users) {
		selID = v.users[v.selected].ID
	}
	v.shown = v.filter.Select(v.users)
	v.Counts.SetText(v.countsText())
	v.selected = -1
	for i := range v.users {
		if v.users[i].ID == selID {
			v.selected = i
			break
		}
	}
	v.Table.UnselectAll()
	v.Table.Refresh()
	v.showDetail()
}

func (v *Inventory) countsText() string {
	s := v.summary
	unver := fmt.Sprintf("unverified keys %d", s.Unverified)
	stale := fmt.Sprintf("verified long ago %d", s.Stale)
	if len(v.users) > 0 && !v.verified && v.complete {
		unver = fmt.Sprintf("pending keys %d", s.Unverified)
		stale = "verified long ago: admin only"
	}
	return fmt.Sprintf("Users %d (active %d) · Keys %d (active %d) · Covered %d · No backup %d · No primary %d · No active key %d · %s · %s · Showing %d",
		s.Users, s.ActiveUsers, s.Keys, s.ActiveKeys, s.Covered, s.NoBackup, s.NoPrimary, s.NoActive, unver, stale, len(v.shown))
}

// Shown is the number of rows the table shows.
func (v *Inventory) Shown() int { return len(v.shown) }

// Cell is the text of the table's cell at row, col.
func (v *Inventory) Cell(row, col int) string {
	u := &v.users[v.shown[row]]
	switch col {
	case 0:
		return u.DisplayName
	case 1:
		return u.ExternalID
	case 2:
		return u.Email
	case 3:
		return strings.Join(u.Groups, ", ")
	case 4:
		return strconv.Itoa(len(u.Keys))
	case 5:
		return u.Standing()
	case 6:
		return inventory.Ago(u.LastVerified, v.now())
	}
	return ""
}

func (v *Inventory) now() time.Time {
	if v.Options.Now != nil {
		return v.Options.Now()
	}
	return time.Now()
}

func (v *Inventory) selectUser(i int) {
	v.selected = i
	v.showDetail()
}

// SelectRow selects the table's row (as a tap on it does).
func (v *Inventory) SelectRow(row int) { v.Table.Select(widget.TableCellID{Row: row, Col: 0}) }

func (v *Inventory) showDetail() {
	if v.selected < 0 {
		v.Detail.SetText("Select a user to see their keys.")
	} else {
		u := &v.users[v.selected]
		v.Detail.SetText(fmt.Sprintf("%s (%s)\n%s\nGroups: %s\nUser %s, %s\n%s",
			u.DisplayName, u.ExternalID, u.Email, strings.Join(u.Groups, ", "), u.Status, uikit.Count(len(u.Keys), "key", "keys"), strings.ReplaceAll(u.Standing(), ", ", "\n")) +
			DriftText(u.Drift))
	}
	v.DetailKeys.Refresh()
	v.detailBox.Refresh()
}

// DriftText is a user's identity-provider drift as the detail shows it:
// one line each, under the standing; empty without drift.
func DriftText(ds []registry.IDPDrift) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString("\nAt " + d.Provider + ": ")
		if d.Serial != "" {
			b.WriteString("key " + d.Serial + ": ")
		}
		b.WriteString(d.Detail)
	}
	return b.String()
}

// DetailLines are the selected user's key lines as the detail list shows
// them.
func (v *Inventory) DetailLines() []string {
	if v.selected < 0 {
		return nil
	}
	var out []string
	for _, k := range v.users[v.selected].Keys {
		out = append(out, v.keyLine(k))
	}
	return out
}

func (v *Inventory) keyLine(k inventory.Key) string {
	model := k.Model
	if model == "" {
		model = "key"
	}
	last := "last verified " + inventory.Ago(k.LastVerified, v.now())
	if k.LastVerified.IsZero() {
		last = "never verified"
		if v.complete && !v.verified {
			last = "last verification: admin only"
		}
	} else {
		last += " (" + k.LastVerified.Local().Format("2006-01-02 15:04") + ")"
	}
	line := fmt.Sprintf("%s %s · %s · %s\n%s", model, k.Serial, k.Role, k.Status, last)
	if names := k.ModelNames(); len(names) > 0 {
		line += "\nFIDO2: " + strings.Join(names, ", ")
	}
	return line
}

// exportCSV asks where to save the filtered view and writes it there.
func (v *Inventory) exportCSV() {
	users := v.users
	idx := append([]int(nil), v.shown...)
	v.ChooseFile(func(w fyne.URIWriteCloser, err error) {
		if err != nil {
			uikit.ShowError("Export failed", err, v.env.Window)
			return
		}
		if w == nil {
			return // cancelled
		}
		v.Status.SetText(fmt.Sprintf("Writing %s to %s…", uikit.Count(len(idx), "user", "users"), w.URI().Name()))
		v.env.Go(func(context.Context) error {
			werr := inventory.WriteCSV(w, users, idx)
			if cerr := w.Close(); werr == nil {
				werr = cerr
			}
			return werr
		}, func(err error) {
			if err != nil {
				uikit.ShowError("Export failed", fmt.Errorf("writing %s: %w", w.URI().Name(), err), v.env.Window)
				v.Status.SetText("Export failed.")
			} else {
				v.Status.SetText(fmt.Sprintf("Exported %s to %s.", uikit.Count(len(idx), "user", "users"), w.URI().Path()))
			}
			if v.exported != nil {
				v.exported(err)
			}
		})
	})
}
