package enrolui

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// Wizard steps, as the trail records them.
const (
	stepUser     = "user"
	stepNewUser  = "newuser"
	stepKey      = "key"
	stepChecks   = "checks"
	stepPIN      = "pin"
	stepProgress = "progress"
	stepInsert   = "insert"
	stepBackup   = "backup"
	stepResult   = "result"
)

// maxUsers bounds the users read for the search (pages of 500).
const maxUsers = 20000

// wizard is the Enrol screen: pick a user, insert a key, checks, PINs,
// progress with touch prompts, result, then the backup key.
type wizard struct {
	env *uikit.Env
	d   *desk

	root    *keyCatcher
	title   *widget.Label
	summary *widget.Label
	body    *fyne.Container
	cancel  *widget.Button
	next    *widget.Button
	bar     *fyne.Container
	onNext  func()
	step    string
	// back goes a step back (Back); hidden where there is none, or while
	// the key is being changed.
	back   *widget.Button
	onBack func()
	// pendingFocus is the focus a step asked for before the screen was in
	// the window; it is given once the screen is placed.
	pendingFocus fyne.Focusable
	// afterCancel, when set, replaces the result of a run cancelled by
	// Back: it shows the step to go back to.
	afterCancel func()
	// earlier are the keys enrolled by runs that Back ended (a primary
	// enrolled before Back left the backup's PINs).
	earlier []*enrol.Result
	// nextRole is the role the key in hand becomes, when the wizard knows
	// it ("backup" once the backup was asked for).
	nextRole string
	// askedRole is the role the backup question offers; it becomes
	// nextRole on yes.
	askedRole string
	// verifyNow opens Verify with the last key enrolled chosen.
	verifyNow *widget.Button

	// Step 1: the user.
	search     *keyEntry
	users      []registry.User
	matches    []registry.User
	userList   *enterList
	userNote   *widget.Label
	retry      *widget.Button
	user       registry.User
	unfinished *fyne.Container
	userBox    fyne.CanvasObject
	newUserBtn *widget.Button
	loaded     bool // users holds the registry's users, read since step 1 was shown

	// Step 1, a user not in the registry yet (admins only): enrolment
	// creates them (enrol.Request.CreateUser).
	newUser                          bool
	nuExt, nuName, nuEmail, nuGroups *keyEntry
	nuExtErr, nuNameErr, nuEmailErr  *widget.Label
	nuNote                           *widget.Label
	newUserBox                       fyne.CanvasObject

	// Step 2: the key.
	keys    []device.Key
	keyList *enterList
	keyNote *widget.Label
	chosen  uint32
	keyBox  fyne.CanvasObject

	// Step 3: checks.
	checkReg, checkFresh, checkGenuine *widget.Label
	checksBox                          fyne.CanvasObject
	pending                            func() // shows the PIN request that ended the checks

	// Step 4: PINs.
	pin *pinForm

	// Step 5: progress.
	stages      *stagesView
	touch       *touchPanel
	progressFor *widget.Label
	progressBox *fyne.Container

	// Insert a key (the backup, when none fresh is attached).
	insertNote *widget.Label
	insertKeys *fyne.Container
	insertBox  fyne.CanvasObject

	// The backup-key prompt.
	backupNote *widget.Label
	backupQ    *widget.Label
	backupBox  fyne.CanvasObject
	answer     func(bool, error)

	// The result.
	resultHead *widget.Label
	resultText *widget.Label
	resultBox  fyne.CanvasObject

	// The registry wait (enrol.StepRegistryWait): a notice above the step
	// on screen while the enroller waits for a registry that does not
	// answer, with what is left of the wait counting down.
	frame     *fyne.Container
	top       *fyne.Container
	waitBox   *fyne.Container
	waitLabel *widget.Label
	waitWhy   *widget.Label
	waitNext  *widget.Label
	waitStop  chan struct{}
	waiting   bool
	// waitFrom is the stage reached (stepIndex) when the wait began: a
	// later stage means the registry answered.
	waitFrom int
	// lastStage is the last stage reached (stepIndex), -1 before the
	// first of a key.
	lastStage int
	// stoppedWaiting: Cancel was pressed while the registry was waited
	// for.
	stoppedWaiting bool
	// resuming: the run resumes a journalled enrolment, whose key is set
	// up already.
	resuming bool

	// The run.
	running   bool
	cancelRun context.CancelFunc
	serial    uint32 // the key in hand
	done      []uint32
	results   []*enrol.Result
	// enrolled are the keys this screen has enrolled: the key step never
	// picks one of them by itself for the next person.
	enrolled map[uint32]bool

	trail trail
}

func newWizard(env *uikit.Env, d *desk) *wizard {
	w := &wizard{env: env, d: d, enrolled: map[uint32]bool{}}
	w.title = heading("")
	w.summary = wrapped("")
	w.body = container.NewStack()
	w.cancel = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), w.doCancel)
	w.next = widget.NewButtonWithIcon("Next", theme.NavigateNextIcon(), func() {
		if w.onNext != nil {
			w.onNext()
		}
	})
	w.next.Importance = widget.HighImportance
	w.back = widget.NewButtonWithIcon("Back", theme.NavigateBackIcon(), func() {
		if w.onBack != nil {
			w.onBack()
		}
	})
	w.back.Hide()
	w.verifyNow = widget.NewButtonWithIcon("Verify now", theme.ConfirmIcon(), w.openVerify)
	w.verifyNow.Hide()
	w.waitLabel, w.waitWhy, w.waitNext = heading(""), wrapped(""), wrapped("")
	w.waitBox = container.NewVBox(container.NewBorder(nil, nil, widget.NewIcon(theme.WarningIcon()), nil, w.waitLabel), w.waitWhy, w.waitNext)
	w.waitBox.Hide()
	w.lastStage = -1
	w.top = container.NewVBox(w.title, w.summary, w.waitBox, widget.NewSeparator())
	w.bar = container.NewHBox(w.back, layout.NewSpacer(), w.cancel, w.verifyNow, w.next)
	bottom := container.NewVBox(widget.NewSeparator(), w.bar)
	w.frame = container.NewBorder(w.top, bottom, nil, nil, container.NewVScroll(w.body))
	w.root = newKeyCatcher(w.frame, w.key)
	w.root.onPlaced = w.placed

	w.buildUser()
	w.buildKey()
	w.buildChecks()
	w.pin = newPINForm(env.Window, w.doCancel)
	w.stages = newStagesView(providerNames(env.Settings()))
	w.touch = newTouchPanel(d)
	w.progressFor = wrapped("")
	w.progressBox = container.NewVBox(w.progressFor, w.touch.box, w.stages.box)
	w.touch.relayout = func() {
		w.progressBox.Refresh()
		w.body.Refresh()
	}
	w.insertNote = heading("")
	w.insertKeys = container.NewStack()
	w.insertBox = container.NewVBox(w.insertNote,
		wrapped("Enrolment goes on by itself once a factory-fresh key is attached. Attached now:"), w.insertKeys)
	w.backupNote, w.backupQ = wrapped(""), heading("")
	w.backupBox = container.NewVBox(w.backupNote, w.backupQ)
	w.resultHead, w.resultText = heading(""), wrapped("")
	w.resultBox = container.NewVBox(w.resultHead, w.resultText)

	if env.Feed != nil {
		// Taken up through d.do from a goroutine of its own, the latest
		// list each time, so the subscription never runs under the lock
		// of whoever published.
		env.Feed.Subscribe(func([]device.Key) {
			go d.do(func() { w.setKeys(env.Feed.Current()) })
		})
	}
	w.showUser()
	return w
}

// key handles Enter and Escape where no entry has the focus.
func (w *wizard) key(name fyne.KeyName) {
	switch {
	case isEnter(name):
		if !w.next.Disabled() && w.next.Visible() && w.onNext != nil {
			w.onNext()
		}
	case name == fyne.KeyEscape:
		w.doCancel()
	}
}

// show puts a step on screen.
func (w *wizard) show(step, title string, content fyne.CanvasObject, next string, onNext func(), focus fyne.Focusable) {
	w.step = step
	w.title.SetText(title)
	w.body.Objects = []fyne.CanvasObject{content}
	w.body.Refresh()
	w.onNext = onNext
	w.back.Enable()
	if next == "" {
		w.next.Hide()
	} else {
		w.next.SetText(next)
		w.next.Show()
		w.next.Enable()
	}
	w.onBack = w.backFrom(step)
	if w.onBack != nil {
		w.back.Show()
	} else {
		w.back.Hide()
	}
	if step != stepResult {
		w.verifyNow.Hide()
	}
	w.updateSummary()
	w.bar.Refresh()
	if focus == nil {
		focus = w.root
	}
	w.focus(focus)
	w.trail.add(step)
}

// focus gives obj the keyboard focus once the screen is in the window. The
// shell builds a screen before it puts it there, and a run goes on while
// another screen is shown: Fyne's desktop canvas refuses focus for an
// object it does not hold, and logs it. The focus waits for placed.
func (w *wizard) focus(obj fyne.Focusable) {
	if w.env.Window == nil {
		return
	}
	if !inCanvas(w.env.Window.Canvas(), w.root) {
		w.pendingFocus = obj
		return
	}
	w.pendingFocus = nil
	w.env.Window.Canvas().Focus(obj)
}

// placed gives the focus a step asked for before the screen was in the
// window.
func (w *wizard) placed() {
	if f := w.pendingFocus; f != nil && w.env.Window != nil && inCanvas(w.env.Window.Canvas(), w.root) {
		w.pendingFocus = nil
		w.env.Window.Canvas().Focus(f)
	}
}

// backFrom is what Back does on step: the step before it, nil where there
// is none to go to (the first step, the result) or where the key is being
// changed and only Cancel can stop it.
func (w *wizard) backFrom(step string) func() {
	switch step {
	case stepNewUser:
		return w.showUserKeepSearch
	case stepKey:
		if w.newUser {
			return func() { w.show(stepNewUser, "Step 1 of 5 · New user", w.newUserBox, "Next", w.submitNewUser, w.nuExt) }
		}
		return w.showUserKeepSearch
	case stepChecks:
		if w.running {
			return func() { w.cancelBack(w.showKey) }
		}
	case stepPIN:
		if !w.running || !w.pin.isNew {
			return nil
		}
		if w.pin.req.Kind == enrol.PIVPIN {
			// The enrolment asks the FIDO2 PIN first: it starts again
			// on the same key, up to the FIDO2 PIN. Nothing was written.
			serial := w.serial
			return func() {
				w.cancelBack(func() {
					w.chosen = serial
					w.startEnrol()
				})
			}
		}
		return func() { w.cancelBack(w.showKey) }
	}
	return nil
}

// cancelBack ends the run before anything was written to the key and then
// shows the step to go back to instead of a result.
func (w *wizard) cancelBack(then func()) {
	if !w.running || w.cancelRun == nil {
		then()
		return
	}
	w.afterCancel = then
	w.back.Disable()
	w.next.Disable()
	w.pin.clear()
	w.trail.add("back")
	w.cancelRun()
}

// showUserKeepSearch goes back to step 1 with what was searched for.
func (w *wizard) showUserKeepSearch() {
	q := w.search.Text
	w.showUser()
	if q != "" {
		w.search.SetText(q)
	}
}

func (w *wizard) updateSummary() {
	var parts []string
	if w.user.ExternalID != "" {
		u := fmt.Sprintf("User: %s (%s)", w.user.DisplayName, w.user.ExternalID)
		if w.newUser {
			u += ", new: added to the registry by this enrolment"
		}
		parts = append(parts, u)
	}
	if w.serial != 0 {
		parts = append(parts, fmt.Sprintf("Key: %d", w.serial))
		for _, k := range w.keys {
			if k.Serial == w.serial && k.Virtual {
				parts[len(parts)-1] += " (VIRTUAL practice key)"
			}
		}
		if w.nextRole != "" && w.step != stepResult {
			parts[len(parts)-1] += ", to be the " + strings.ToUpper(w.nextRole) + " key"
		}
	}
	if len(w.done) > 0 {
		s := make([]string, len(w.done))
		for i, n := range w.done {
			s[i] = fmt.Sprint(n)
		}
		parts = append(parts, "Enrolled: "+strings.Join(s, ", "))
	}
	w.summary.SetText(strings.Join(parts, "  ·  "))
}

// --- Step 1: the user ---

func (w *wizard) buildUser() {
	w.search = newKeyEntry(false, "name, user id or email")
	w.search.OnEscape = w.doCancel
	w.search.OnChanged = func(string) { w.filter() }
	w.search.OnSubmitted = func(string) {
		if w.user.ID == "" && len(w.matches) == 1 {
			w.userList.Select(0)
		}
		if w.loaded && len(w.matches) == 0 && strings.TrimSpace(w.search.Text) != "" && w.env.Can(uikit.Admin) {
			w.showNewUser()
			return
		}
		if w.user.ID != "" && w.onNext != nil {
			w.onNext()
		}
	}
	w.userList = newEnterList(w.key, func() int { return len(w.matches) },
		func() fyne.CanvasObject { return widget.NewLabel("") },
		func(i widget.ListItemID, o fyne.CanvasObject) {
			u := w.matches[i]
			o.(*widget.Label).SetText(userLine(u))
		})
	w.userList.OnSelected = func(i widget.ListItemID) {
		if i < len(w.matches) {
			w.user = w.matches[i]
			w.next.Enable()
			w.updateSummary()
		}
	}
	w.userList.OnUnselected = func(widget.ListItemID) {
		w.user = registry.User{}
		w.next.Disable()
	}
	w.userNote = wrapped("Reading the registry's users…")
	w.retry = widget.NewButton("Try again", w.loadUsers)
	w.retry.Hide()
	w.unfinished = container.NewVBox()
	w.newUserBtn = widget.NewButtonWithIcon("New user…", theme.ContentAddIcon(), w.showNewUser)
	if !w.env.Can(uikit.Admin) {
		// Only an admin adds people to the registry.
		w.newUserBtn.Hide()
	}
	list := container.NewGridWrap(fyne.NewSize(640, 220), w.userList)
	w.userBox = container.NewVBox(
		wrapped("Whose key is it? Search the registry's users, choose one, then press Enter."),
		container.NewBorder(nil, nil, nil, w.newUserBtn, w.search), w.userNote, w.retry, list, w.unfinished)
	w.buildNewUser()
}

// userLine is a user as the search lists them: name, id and email, the
// parts the registry has.
func userLine(u registry.User) string {
	var parts []string
	for _, p := range []string{u.DisplayName, u.ExternalID, u.Email} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " · ")
}

func (w *wizard) showUser() {
	w.user, w.serial, w.chosen, w.done, w.results = registry.User{}, 0, 0, nil, nil
	w.newUser, w.earlier, w.nextRole = false, nil, ""
	w.userList.UnselectAll()
	w.cancel.Show()
	w.show(stepUser, "Step 1 of 5 · Choose the user", w.userBox, "Next", func() {
		if w.user.ID != "" {
			w.showKey()
		}
	}, w.search)
	if w.user.ID == "" {
		w.next.Disable()
	}
	// Read afresh each time: users come and go, and a batch may have
	// finished meanwhile.
	w.loadUsers()
	w.loadUnfinished()
}

// anotherUser starts over for the next person: an empty search, nobody
// chosen, no PIN or new-user field filled in, and the key step waiting for
// a factory-fresh key; nothing of the last person stays on screen.
func (w *wizard) anotherUser() {
	w.search.SetText("")
	for _, e := range []*keyEntry{w.nuExt, w.nuName, w.nuEmail, w.nuGroups} {
		e.SetText("")
	}
	w.pin.reset()
	w.keyNote.SetText("")
	w.resultHead.SetText("")
	w.resultText.SetText("")
	w.backupNote.SetText("")
	w.progressFor.SetText("")
	w.showUser()
}

// loadUsers reads the registry's users in the background.
// readUsers reads the registry's users, at most maxUsers of them.
func (w *wizard) readUsers(ctx context.Context) ([]registry.User, error) {
	if w.env.Registry == nil {
		return nil, uikit.ErrNoRegistry
	}
	reg, err := w.env.Registry(ctx)
	if err != nil {
		return nil, err
	}
	var users []registry.User
	err = reg.EachUser(ctx, 500, func(u registry.User) (bool, error) {
		users = append(users, u)
		return len(users) < maxUsers, nil
	})
	return users, err
}

func (w *wizard) loadUsers() {
	w.loaded = false
	w.retry.Hide()
	w.userNote.SetText("Reading the registry's users…")
	w.body.Refresh()
	var users []registry.User
	w.d.run(w.env, func(ctx context.Context) (err error) {
		users, err = w.readUsers(ctx)
		return err
	}, func(err error) {
		defer w.body.Refresh()
		if err != nil {
			w.userNote.SetText("The registry's users could not be read: " + uikit.Message(err))
			w.userNote.Importance = widget.DangerImportance
			w.userNote.Refresh()
			w.retry.Show()
			w.trail.add("users-failed")
			return
		}
		sort.Slice(users, func(i, j int) bool { return users[i].DisplayName < users[j].DisplayName })
		w.users, w.loaded = users, true
		w.filter()
		w.trail.add("users-loaded")
	})
}

func (w *wizard) filter() {
	q := strings.ToLower(strings.TrimSpace(w.search.Text))
	w.matches = w.matches[:0]
	for _, u := range w.users {
		if u.Status != "" && u.Status != registry.UserActive {
			continue
		}
		if q == "" || strings.Contains(strings.ToLower(u.DisplayName), q) || strings.Contains(strings.ToLower(u.ExternalID), q) ||
			strings.Contains(strings.ToLower(u.Email), q) {
			w.matches = append(w.matches, u)
		}
	}
	w.userList.UnselectAll()
	w.userList.Refresh()
	w.userNote.Importance = widget.MediumImportance
	defer w.newUserBtn.Refresh()
	defer w.userNote.Refresh()
	admin := w.env.Can(uikit.Admin)
	w.newUserBtn.Importance = widget.MediumImportance
	switch {
	case len(w.matches) == 0 && admin:
		if len(w.users) == 0 {
			w.userNote.SetText("The registry has no users yet. Press New user… to add the person whose key this is; enrolment adds them to the registry.")
		} else {
			w.userNote.SetText("No user matches. If they are not in the registry yet, press New user… to add them.")
		}
		w.newUserBtn.Importance = widget.HighImportance
	case len(w.matches) == 0:
		// The helpdesk enrols keys for people already in the registry.
		if len(w.users) == 0 {
			w.userNote.SetText("The registry has no users yet. Only an admin can add users: ask an admin to add this person (Enrol → New user, or a batch roster), then search again.")
		} else {
			w.userNote.SetText("No user matches. Only an admin can add a new user: check the spelling, or ask an admin to add this person, then search again.")
		}
	default:
		w.userNote.SetText(fmt.Sprintf("%d of %s %s.", len(w.matches), uikit.Count(len(w.users), "user", "users"), verb(len(w.matches), "matches", "match")))
	}
}

// buildNewUser builds the form for a person not in the registry yet.
func (w *wizard) buildNewUser() {
	field := func(placeholder string) *keyEntry {
		e := newKeyEntry(false, placeholder)
		e.OnEscape = w.doCancel
		e.OnSubmitted = func(string) { w.submitNewUser() }
		return e
	}
	problem := func() *widget.Label {
		l := wrapped("")
		l.Importance = widget.DangerImportance
		l.Hide()
		return l
	}
	w.nuExt, w.nuName = field("required, e.g. the directory's user name: ada"), field("required, e.g. Ada Lovelace")
	w.nuEmail, w.nuGroups = field("optional: ada@example.org"), field("optional, comma-separated: engineering, oncall")
	w.nuExtErr, w.nuNameErr, w.nuEmailErr = problem(), problem(), problem()
	for _, e := range []*keyEntry{w.nuExt, w.nuName, w.nuEmail} {
		e.OnChanged = func(string) { w.recheckNewUser() }
	}
	w.nuNote = wrapped("")
	form := widget.NewForm(
		widget.NewFormItem("External id", container.NewVBox(w.nuExt, w.nuExtErr)),
		widget.NewFormItem("Display name", container.NewVBox(w.nuName, w.nuNameErr)),
		widget.NewFormItem("Email", container.NewVBox(w.nuEmail, w.nuEmailErr)),
		widget.NewFormItem("Groups", w.nuGroups))
	w.newUserBox = container.NewVBox(
		wrapped("Add the person whose key this is. They are added to the registry when their first key is enrolled, "+
			"so nothing is written if enrolment is cancelled. The external id is the one your directory uses; it cannot be changed later."),
		form, w.nuNote)
}

// showNewUser is step 1 for a person not in the registry yet (admins).
func (w *wizard) showNewUser() {
	if !w.env.Can(uikit.Admin) {
		return
	}
	for _, e := range []*keyEntry{w.nuExt, w.nuName, w.nuEmail, w.nuGroups} {
		e.SetText("")
	}
	// What was searched for is likely the name or the id.
	if q := strings.TrimSpace(w.search.Text); q != "" {
		if strings.Contains(q, " ") {
			w.nuName.SetText(q)
		} else if strings.Contains(q, "@") {
			w.nuEmail.SetText(q)
		} else {
			w.nuExt.SetText(q)
		}
	}
	for _, l := range []*widget.Label{w.nuExtErr, w.nuNameErr, w.nuEmailErr} {
		l.Hide()
	}
	w.nuNote.SetText("")
	w.user, w.newUser = registry.User{}, false
	w.show(stepNewUser, "Step 1 of 5 · New user", w.newUserBox, "Next", w.submitNewUser, w.nuExt)
}

// newUserProblems checks the form: the problem for each field, "" when
// the field is fine.
func newUserProblems(ext, name, email string, users []registry.User) (extP, nameP, emailP string) {
	switch {
	case ext == "":
		extP = "The external id is required."
	case strings.ContainsAny(ext, " \t\n"):
		extP = "The external id cannot contain spaces."
	default:
		for _, u := range users {
			if strings.EqualFold(u.ExternalID, ext) {
				extP = fmt.Sprintf("A user with external id %q is already in the registry (%s). Go back and search for them instead.", u.ExternalID, u.DisplayName)
				break
			}
		}
	}
	if name == "" {
		nameP = "The display name is required."
	}
	if email != "" && (!strings.Contains(email, "@") || strings.ContainsAny(email, " \t")) {
		emailP = "This is not an email address (name@domain); leave it empty if unknown."
	}
	return
}

// recheckNewUser, as the person types, updates the problems shown under
// the fields: one fixed disappears at once ("The display name is
// required" under a name now typed). Problems not shown yet wait for Next.
func (w *wizard) recheckNewUser() {
	if w.step != stepNewUser {
		return
	}
	ep, np, mp := newUserProblems(strings.TrimSpace(w.nuExt.Text), strings.TrimSpace(w.nuName.Text), strings.TrimSpace(w.nuEmail.Text), w.users)
	changed := false
	for _, p := range []struct {
		l *widget.Label
		s string
	}{{w.nuExtErr, ep}, {w.nuNameErr, np}, {w.nuEmailErr, mp}} {
		if !p.l.Visible() {
			continue
		}
		changed = true
		if p.s == "" {
			p.l.SetText("")
			p.l.Hide()
		} else {
			p.l.SetText(p.s)
		}
	}
	if changed {
		w.body.Refresh()
	}
}

// submitNewUser checks the form, reads the registry's users afresh (one
// may have been added meanwhile), then goes on to the key.
func (w *wizard) submitNewUser() {
	if w.step != stepNewUser {
		return
	}
	ext, name := strings.TrimSpace(w.nuExt.Text), strings.TrimSpace(w.nuName.Text)
	email := strings.TrimSpace(w.nuEmail.Text)
	var groups []string
	for _, g := range strings.Split(w.nuGroups.Text, ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	show := func(users []registry.User) bool {
		ep, np, mp := newUserProblems(ext, name, email, users)
		ok := true
		for _, p := range []struct {
			l *widget.Label
			s string
		}{{w.nuExtErr, ep}, {w.nuNameErr, np}, {w.nuEmailErr, mp}} {
			p.l.SetText(p.s)
			if p.s == "" {
				p.l.Hide()
			} else {
				p.l.Show()
				ok = false
			}
		}
		w.body.Refresh()
		return ok
	}
	if !show(w.users) {
		w.trail.add("newuser-invalid")
		w.focusProblem()
		return
	}
	w.next.Disable()
	w.nuNote.Importance = widget.MediumImportance
	w.nuNote.SetText("Checking the registry…")
	var users []registry.User
	w.d.run(w.env, func(ctx context.Context) (err error) {
		users, err = w.readUsers(ctx)
		return err
	}, func(err error) {
		if w.step != stepNewUser {
			return
		}
		w.next.Enable()
		if err != nil {
			w.nuNote.Importance = widget.DangerImportance
			w.nuNote.SetText("The registry could not be checked: " + uikit.Message(err))
			w.nuNote.Refresh()
			w.trail.add("newuser-failed")
			return
		}
		w.nuNote.SetText("")
		w.users = users
		if !show(users) {
			w.trail.add("newuser-invalid")
			w.focusProblem()
			return
		}
		w.user = registry.User{ExternalID: ext, DisplayName: name, Email: email, Groups: groups}
		w.newUser = true
		w.trail.add("newuser-ok")
		w.showKey()
	})
}

// focusProblem puts the keyboard focus on the first field to fix.
func (w *wizard) focusProblem() {
	if w.env.Window == nil {
		return
	}
	for _, p := range []struct {
		l *widget.Label
		e *keyEntry
	}{{w.nuExtErr, w.nuExt}, {w.nuNameErr, w.nuName}, {w.nuEmailErr, w.nuEmail}} {
		if p.l.Visible() {
			w.env.Window.Canvas().Focus(p.e)
			return
		}
	}
}

// loadUnfinished lists journalled enrolments that did not finish, with
// Resume for the ones that can be.
func (w *wizard) loadUnfinished() {
	var recs []*enrol.Record
	w.d.run(w.env, func(ctx context.Context) error {
		en, err := w.d.enroller(ctx, w.env)
		if err != nil {
			return err
		}
		defer en.Close()
		recs, err = en.Unfinished(ctx)
		return err
	}, func(err error) {
		w.unfinished.RemoveAll()
		defer w.trail.add("unfinished-loaded")
		defer w.body.Refresh()
		if err != nil || len(recs) == 0 {
			if err != nil {
				w.unfinished.Add(wrapped("Enrolment is not ready at this desk: " + uikit.Message(err)))
			}
			return
		}
		w.unfinished.Add(heading("Unfinished enrolments"))
		for _, r := range recs {
			r := r
			line := wrapped(fmt.Sprintf("Key %d for %s stopped at %q. %s", r.Serial, r.ExternalID, r.Stage, stageState(r.Serial, r.Stage)))
			if resumable(r.Stage) {
				b := widget.NewButtonWithIcon(fmt.Sprintf("Resume key %d", r.Serial), theme.MediaPlayIcon(), func() { w.resume(r.Serial) })
				w.unfinished.Add(container.NewBorder(nil, nil, nil, b, line))
			} else {
				w.unfinished.Add(line)
			}
		}
	})
}

// --- Step 2: the key ---

func (w *wizard) buildKey() {
	w.keyList = newEnterList(w.key, func() int { return len(w.keys) }, newKeyRow,
		func(i widget.ListItemID, o fyne.CanvasObject) { setKeyRow(o, w.keys[i]) })
	w.keyList.OnSelected = func(i widget.ListItemID) {
		if i < len(w.keys) && !w.keys[i].SerialUnknown {
			w.chosen = w.keys[i].Serial
			if w.step == stepKey {
				w.next.Enable()
				w.keyNote.SetText(fmt.Sprintf("Key %d chosen. Press Enter to check it.", w.chosen))
			}
		}
	}
	w.keyNote = wrapped("")
	w.keyBox = container.NewVBox(
		wrapped("Insert a factory-fresh YubiKey for this user and choose it. Keys marked VIRTUAL are practice keys: software, never hardware."),
		container.NewGridWrap(fyne.NewSize(640, 160), w.keyList), w.keyNote)
}

func (w *wizard) setKeys(ks []device.Key) {
	w.keys = append([]device.Key(nil), ks...)
	sort.Slice(w.keys, func(i, j int) bool { return w.keys[i].Serial < w.keys[j].Serial })
	w.keyList.UnselectAll()
	w.keyList.Refresh()
	sel := -1
	for i, k := range w.keys {
		if k.Serial == w.chosen && w.chosen != 0 {
			sel = i
		}
	}
	if sel < 0 && len(w.keys) == 1 && w.step == stepKey && !w.enrolled[w.keys[0].Serial] {
		sel = 0
	}
	if sel < 0 {
		w.chosen = 0
	}
	if w.step == stepKey {
		w.next.Disable()
		var just []string
		for _, k := range w.keys {
			if w.enrolled[k.Serial] {
				just = append(just, fmt.Sprint(k.Serial))
			}
		}
		already := ""
		if len(just) == 1 {
			already = "key " + just[0] + " is enrolled already"
		} else if len(just) > 1 {
			already = "keys " + strings.Join(just, ", ") + " are enrolled already"
		}
		switch {
		case len(w.keys) == 0:
			w.keyNote.SetText("Waiting for a key…")
		case len(just) == len(w.keys):
			w.keyNote.SetText("Waiting for a factory-fresh key: " + already + ". Insert this person's key.")
		case len(just) > 0:
			w.keyNote.SetText("Choose the key to enrol (" + already + ").")
		default:
			w.keyNote.SetText("Choose the key to enrol.")
		}
	}
	if sel >= 0 {
		w.keyList.Select(sel)
	}
	w.insertKeys.Objects = []fyne.CanvasObject{keysView(w.keys)}
	w.insertKeys.Refresh()
	w.d.keysChanged()
	w.trail.add("keys")
}

func (w *wizard) showKey() {
	w.show(stepKey, "Step 2 of 5 · Insert the key", w.keyBox, "Check the key", func() {
		if w.chosen != 0 {
			w.startEnrol()
		}
	}, nil)
	w.setKeys(w.keys)
}

// --- Step 3: checks ---

func (w *wizard) buildChecks() {
	w.checkReg, w.checkFresh, w.checkGenuine = wrapped(""), wrapped(""), wrapped("")
	w.checksBox = container.NewVBox(
		wrapped("Before anything is written, the key is checked:"),
		w.checkReg, w.checkFresh, w.checkGenuine)
}

func (w *wizard) showChecks(serial uint32) {
	w.serial = serial
	w.pending = nil
	w.checkReg.SetText(fmt.Sprintf("…  Key %d is not registered to anyone: checking the registry", serial))
	w.checkFresh.SetText("…  Factory-fresh (no FIDO2 PIN, PIV PIN, PUK and management key at their defaults): checking the key")
	w.checkGenuine.SetText("Genuine YubiKey: proven by the key's own attestation as the first step of enrolment, before anything is registered.")
	for _, l := range []*widget.Label{w.checkReg, w.checkFresh} {
		l.Importance = widget.MediumImportance
		l.Refresh()
	}
	w.show(stepChecks, "Step 3 of 5 · Checks", w.checksBox, "Choose the PINs", func() {
		if w.pending != nil {
			p := w.pending
			w.pending = nil
			p()
		}
	}, nil)
	w.next.Disable()
}

// checksPassed marks the checks done: the enroller asked for the first PIN.
func (w *wizard) checksPassed(show func()) {
	w.checkReg.SetText(fmt.Sprintf("✓  Key %d is not registered to anyone", w.serial))
	w.checkFresh.SetText("✓  Factory-fresh")
	for _, l := range []*widget.Label{w.checkReg, w.checkFresh} {
		l.Importance = widget.SuccessImportance
		l.Refresh()
	}
	w.pending = show
	w.next.Enable()
	w.trail.add("checks-passed")
}

// --- the enrolment run (enrol.UI, on the UI goroutine) ---

func (w *wizard) onProgress(ev enrol.Event) {
	if ev.Step == enrol.StepRegistryWait {
		w.registryWait(ev)
		return
	}
	i := stepIndex(ev.Step)
	if w.waiting && i > w.waitFrom {
		// A stage the wait was short of: the registry answered.
		w.endWait("registry-back")
	}
	switch {
	case ev.Step == enrol.StepUser || ev.Step == enrol.StepKey:
		w.lastStage = -1
	case i >= 0:
		w.lastStage = i
	}
	switch {
	case ev.Step == enrol.StepKey:
		if w.step != stepChecks || w.serial != ev.Serial {
			w.showChecks(ev.Serial)
		}
	case ev.Step == enrol.StepDone:
		w.touch.hide()
		w.stages.reached(ev.Step)
		w.done = append(w.done, ev.Serial)
		w.enrolled[ev.Serial] = true
		w.updateSummary()
		w.trail.add("key-done")
	case stepIndex(ev.Step) >= 0:
		if w.step != stepProgress {
			w.showProgress(ev.Serial)
		}
		w.touch.hide()
		w.stages.reached(ev.Step)
	}
}

func (w *wizard) onNewPIN(r enrol.PINRequest, try int, answer func(string, error)) {
	w.endWait("registry-back")
	// The key waits for the PIN, not a touch: no touch prompt beside it.
	w.touch.hide()
	show := func() {
		w.pin.ask(r, true, try, answer)
		w.show(stepPIN, "Step 4 of 5 · "+string(r.Kind), w.pin.box, "Set PIN", w.pin.submit, w.pin.pin)
		w.trail.add("pin:" + string(r.Kind))
	}
	if w.step == stepChecks && r.Problem == "" && r.Kind == enrol.FIDO2PIN {
		w.checksPassed(show)
		return
	}
	show()
}

func (w *wizard) onPIN(r enrol.PINRequest, answer func(string, error)) {
	w.endWait("registry-back")
	w.touch.hide()
	w.pin.ask(r, false, 0, answer)
	w.show(stepPIN, "Type the PIN · "+string(r.Kind), w.pin.box, "OK", w.pin.submit, w.pin.pin)
	w.trail.add("pin:" + string(r.Kind))
}

func (w *wizard) onTouch(serial uint32) {
	w.endWait("registry-back")
	if w.step != stepProgress {
		w.showProgress(serial)
	}
	w.touch.show(serial)
	w.trail.add("touch")
}

func (w *wizard) onInsert(r enrol.InsertRequest) {
	w.endWait("registry-back")
	what := "a factory-fresh key"
	if r.Role != "" {
		what += " as " + string(r.Role)
	}
	if r.Of > 0 {
		what += fmt.Sprintf(" (key %d of %d)", r.Index, r.Of)
	}
	w.serial = 0
	w.insertNote.SetText(fmt.Sprintf("Insert %s for %s.", what, r.User))
	w.insertKeys.Objects = []fyne.CanvasObject{keysView(w.keys)}
	w.insertKeys.Refresh()
	w.show(stepInsert, "Insert the next key", w.insertBox, "", nil, nil)
}

func (w *wizard) onConfirm(q string, answer func(bool, error)) {
	w.endWait("registry-back")
	w.answer = answer
	// The enrolment asks when the user lacks a key of some role; the
	// question names the roles missing (app/enrol.EnrolUser).
	role := "backup"
	if strings.Contains(q, "missing: primary") && !strings.Contains(q, "backup") {
		role = "primary"
	}
	name := w.user.DisplayName
	if name == "" {
		name = w.user.ExternalID
	}
	w.backupNote.SetText(fmt.Sprintf("✓  Key %d is enrolled and active.\n\nThe next key you insert becomes %s's %s key: it signs in the same way, "+
		"and it is what %s uses when key %d is lost or broken. Keep the two apart.", w.serial, name, strings.ToUpper(role), name, w.serial))
	w.backupQ.SetText(q)
	w.askedRole = role
	w.cancel.SetText("Not now")
	w.show(stepBackup, "Step 5 of 5 · The backup key", w.backupBox, "Enrol the backup key now", func() {
		w.reply(true)
	}, nil)
}

func (w *wizard) reply(yes bool) {
	if w.answer != nil {
		a := w.answer
		w.answer = nil
		if yes {
			w.nextRole = w.askedRole
		}
		w.cancel.SetText("Cancel")
		w.bar.Refresh()
		a(yes, nil)
	}
}

// registryWait shows that the enroller waits for a registry that does
// not answer, and counts down what is left of the wait (ev.Left). The key
// stays as it is meanwhile: a key already set up finishes in place when
// the registry answers, with the PINs still at hand; Cancel stops waiting.
func (w *wizard) registryWait(ev enrol.Event) {
	if !w.waiting {
		w.waiting, w.waitFrom = true, w.lastStage
		if w.waitFrom < stepIndex(enrol.StepRegister) && !w.resuming {
			w.waitNext.SetText("Cancel stops waiting. Nothing has been written to the key yet.")
		} else {
			w.waitNext.SetText(fmt.Sprintf("Cancel stops waiting: key %d then stays set up and is kept under \"Unfinished enrolments\" "+
				"on this screen, to resume when the registry is back.", w.serial))
		}
		w.waitBox.Show()
		w.relayoutTop()
		defer w.trail.add("registry-wait")
	}
	if why, _, ok := strings.Cut(ev.Detail, "; trying again"); ok && why != "" {
		w.waitWhy.SetText("Last try: " + why + ".")
	}
	if w.waitStop != nil {
		close(w.waitStop)
	}
	stop := make(chan struct{})
	w.waitStop = stop
	end := time.Now().Add(ev.Left)
	w.waitLabel.SetText(waitText(ev.Left))
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				left := max(end.Sub(now), 0)
				w.d.do(func() {
					if w.waitStop == stop {
						w.waitLabel.SetText(waitText(left))
					}
				})
				if left == 0 {
					return
				}
			}
		}
	}()
}

// waitText is the registry-wait notice with left of the wait.
func waitText(left time.Duration) string {
	if s := int(left.Round(time.Second).Seconds()); s > 0 {
		return fmt.Sprintf("The registry does not answer; keydesk keeps trying (%d s left). Keep the key inserted.", s)
	}
	return "The registry does not answer; keydesk tries one last time. Keep the key inserted."
}

// endWait hides the registry-wait notice, recording state in the trail
// when it was shown.
func (w *wizard) endWait(state string) {
	if w.waitStop != nil {
		close(w.waitStop)
		w.waitStop = nil
	}
	if !w.waiting {
		return
	}
	w.waiting = false
	w.waitBox.Hide()
	w.relayoutTop()
	if state != "" {
		w.trail.add(state)
	}
}

// relayoutTop lays the screen out again after the notice above the step
// shows or hides.
func (w *wizard) relayoutTop() {
	w.top.Refresh()
	w.frame.Refresh()
}

func (w *wizard) showProgress(serial uint32) {
	if serial != 0 {
		w.serial = serial
	}
	w.stages.reset()
	w.progressFor.SetText(fmt.Sprintf("Enrolling key %d. Keep it inserted until this is done.", w.serial))
	w.show(stepProgress, "Step 5 of 5 · Enrolling", w.progressBox, "", nil, nil)
}

// startEnrol enrols the chosen key for the chosen user, then offers the
// backup (enrol.EnrolUser).
func (w *wizard) startEnrol() {
	// A registry that does not answer is waited for, as keydesk enrol
	// --user does (Config.RegistryWait): a key already set up finishes in
	// place when it is back.
	req := enrol.Request{User: client.EnrolUser{ExternalID: w.user.ExternalID}, Serial: w.chosen, WaitRegistry: true}
	if w.newUser {
		req.CreateUser = true
		req.User = client.EnrolUser{ExternalID: w.user.ExternalID, DisplayName: w.user.DisplayName, Email: w.user.Email, Groups: w.user.Groups}
	}
	w.serial, w.resuming = w.chosen, false
	w.showChecks(w.chosen)
	w.start(func(ctx context.Context, en *enrol.Enroller, ui enrol.UI) ([]*enrol.Result, error) {
		return en.EnrolUser(ctx, req, ui)
	})
}

// resume finishes a journalled enrolment, waiting for a registry that
// does not answer as an enrolment does.
func (w *wizard) resume(serial uint32) {
	w.serial, w.resuming = serial, true
	w.showProgress(serial)
	w.start(func(ctx context.Context, en *enrol.Enroller, ui enrol.UI) ([]*enrol.Result, error) {
		res, err := en.ResumeWaiting(ctx, serial, ui)
		if err != nil {
			return nil, err
		}
		return []*enrol.Result{res}, nil
	})
}

func (w *wizard) start(work func(ctx context.Context, en *enrol.Enroller, ui enrol.UI) ([]*enrol.Result, error)) {
	if err := w.d.claim("Enrol"); err != nil {
		w.finish(nil, err)
		return
	}
	w.running, w.stoppedWaiting, w.lastStage = true, false, -1
	w.cancel.Enable()
	w.updateBack()
	var res []*enrol.Result
	ui := w.d.bridge(w, w.env.Feed)
	w.cancelRun = w.d.run(w.env, func(ctx context.Context) error {
		en, err := w.d.enroller(ctx, w.env)
		if err != nil {
			return err
		}
		defer en.Close()
		res, err = work(ctx, en, ui)
		return err
	}, func(err error) {
		w.d.release("Enrol")
		w.running, w.cancelRun = false, nil
		var ie *enrol.InterruptedError
		// Back ends a registry wait with the registry's error.
		stopped := errors.Is(err, context.Canceled) || errors.Is(err, client.ErrUnreachable)
		if then := w.afterCancel; then != nil && stopped && !errors.As(err, &ie) {
			// Back, before the key was changed: no result, the step
			// before instead. Keys this run finished stay listed.
			w.afterCancel = nil
			w.endWait("")
			w.touch.hide()
			w.pin.clear()
			w.answer = nil
			w.cancel.SetText("Cancel")
			w.cancel.Enable()
			w.earlier = append(w.earlier, res...)
			w.serial = 0
			then()
			return
		}
		w.afterCancel = nil
		w.finish(append(w.earlier, res...), err)
	})
}

// updateBack shows Back when the step on screen has one.
func (w *wizard) updateBack() {
	w.onBack = w.backFrom(w.step)
	if w.onBack != nil {
		w.back.Show()
		w.back.Enable()
	} else {
		w.back.Hide()
	}
	w.bar.Refresh()
}

// finish shows how the run ended.
func (w *wizard) finish(res []*enrol.Result, err error) {
	w.endWait("")
	w.touch.hide()
	w.pin.clear()
	w.answer = nil
	w.cancel.SetText("Cancel")
	w.cancel.Enable()
	w.results = res
	var b strings.Builder
	for _, r := range res {
		fmt.Fprintf(&b, "✓  Key %d enrolled for %s as %s: %s", r.Serial, r.DisplayName, r.Role, r.Status)
		if r.Genuine != "" {
			fmt.Fprintf(&b, " (genuine: %s)", r.Genuine)
		}
		if r.CSRPath != "" {
			fmt.Fprintf(&b, "\n    Certificate request for the CA: %s", r.CSRPath)
		}
		if r.Status == registry.KeyActive && r.PIVProof && r.FIDO2Proof {
			b.WriteString("\n    Proved to the registry: a PIV signature (with the PIV PIN) and a FIDO2 sign-in")
		}
		if r.PINChange == enrol.PINChangeForced {
			b.WriteString("\n    The key asks for a new FIDO2 PIN at first use")
		}
		for _, n := range r.NotRedone {
			fmt.Fprintf(&b, "\n    Resumed, not done again: %s", n)
		}
		b.WriteString("\n")
	}
	if n := len(res); n > 0 {
		last := res[n-1]
		if last.Covered {
			fmt.Fprintf(&b, "\n%s is covered: a primary and a backup key are active.\n", last.DisplayName)
		} else if len(last.Missing) > 0 {
			fmt.Fprintf(&b, "\n%s is not covered yet (missing: %s). Enrol the backup key from this screen when it is at hand.\n", last.DisplayName, strings.Join(last.Missing, ", "))
		}
	}
	head := "Done"
	switch {
	case err != nil && w.stoppedWaiting:
		head = "Stopped waiting for the registry"
		w.stages.failed()
	case err != nil && errors.Is(err, context.Canceled):
		head = "Cancelled"
		w.stages.failed()
	case err != nil:
		head = "Enrolment stopped"
		w.stages.failed()
	}
	if err != nil {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		var ie *enrol.InterruptedError
		if w.stoppedWaiting && !errors.As(err, &ie) && w.serial != 0 {
			// The wait was before the key was touched.
			fmt.Fprintf(&b, "Stopped waiting for the registry before key %d was changed: it is as it was, and nothing was registered.", w.serial)
		} else {
			b.WriteString(outcome(err, w.serial))
		}
	}
	w.resultHead.SetText(head)
	if err != nil {
		w.resultHead.Importance = widget.DangerImportance
	} else {
		w.resultHead.Importance = widget.SuccessImportance
	}
	w.resultHead.Refresh()
	w.resultText.SetText(strings.TrimSpace(b.String()))
	w.cancel.Hide()
	w.nextRole = ""
	w.show(stepResult, "Result", w.resultBox, "Enrol another user", w.anotherUser, nil)
	if n := len(res); n > 0 && w.env.Open != nil && res[n-1].Status == registry.KeyActive {
		w.verifyNow.SetText(fmt.Sprintf("Verify key %d now", res[n-1].Serial))
		w.verifyNow.Show()
		w.bar.Refresh()
	}
}

// openVerify opens the Verify screen with the last key enrolled chosen.
func (w *wizard) openVerify() {
	if n := len(w.results); n > 0 && w.env.Open != nil && w.env.Open("verify") && w.env.Feed != nil {
		w.env.Feed.Choose(w.results[n-1].Serial)
		w.trail.add("verify-opened")
	}
}

// doCancel is Cancel and Escape: it cancels a run (the enroller stops and
// the result says what state the key was left in), answers the backup
// question no, or steps back.
func (w *wizard) doCancel() {
	switch {
	case w.step == stepBackup && w.answer != nil:
		w.reply(false)
	case w.running && w.cancelRun != nil:
		if w.waiting {
			w.stoppedWaiting = true
			w.trail.add("wait-cancelled")
		}
		w.title.SetText("Cancelling…")
		w.cancel.Disable()
		w.next.Disable()
		w.pin.clear()
		w.cancelRun()
	case w.step == stepKey && w.newUser:
		w.show(stepNewUser, "Step 1 of 5 · New user", w.newUserBox, "Next", w.submitNewUser, w.nuExt)
	case w.step == stepKey, w.step == stepNewUser:
		w.showUser()
	case w.step == stepResult:
		w.anotherUser()
	case w.step == stepUser:
		w.search.SetText("")
	}
}
