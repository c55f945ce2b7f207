/*
 * libs/locking's lock protocol for one key folder K, as the epoch-floor fix describes it.
 * README.md (this folder) maps every step to the function that performs it and explains the abstraction.
 *
 * Bounds (-D on the spin command line):
 *   NEXCL      exclusive processes: process 0 is the cache cleaner (its act deletes the image), the others
 *              are copy destinations (their act is the publish rename)
 *   NREAD      shared processes (copy sources)
 *   MAXG       generation numbers 0 .. MAXG-1 (an assert reports a run that needed more)
 *   MAXFAULTS  pauses + crashes over the whole run
 *   MAXREMOVALS hand removals of K
 *   MAXATT     acquisitions per process (a lost lock is retried; an assert reports a run that needed more)
 * Variants (-D):
 *   OLD_FIRST_GEN      the bug: no epoch, a claimant on an empty K picks its own first number (its clock)
 *   ABORT_ONLY         an exclusive holder checks lock.signal instead of assertStillHeld() before its act
 *   TRUST_FROM_HB_START the holder's trust window starts when its heartbeat entry h~ is created, as
 *                      Heartbeat.start() does today, instead of at the mkdir of g-<n>
 *   NO_CRASH_TAKEOVER  a crashed gate holder's heartbeat is never judged stale (shows the liveness
 *                      claim can fail)
 *   SAME_TICK_EPOCH    a re-made epoch may get the removed life's floor: a coarse mtime clock without
 *                      the code's clock rule (fs-clock.ts), so hiwater no longer bounds the new floor
 *   LIVENESS           adds the liveness claim (run pan -a -f)
 */

#ifndef NEXCL
#define NEXCL 2
#endif
#ifndef NREAD
#define NREAD 1
#endif
#define NP (NEXCL + NREAD)
#ifndef MAXG
#define MAXG 8
#endif
#ifndef MAXFAULTS
#define MAXFAULTS 2
#endif
#ifndef MAXREMOVALS
#define MAXREMOVALS 1
#endif
#ifndef MAXATT
#define MAXATT 3
#endif

#define NONE 255
#define CLEANER 0
#define isReader(p) ((p) >= NEXCL)
#define BIT(p) (1 << (p))

/* ---- the key folder K (what readdir/stat/mkdir/rm see) ---- */
bit kExists;            /* K itself (a never-used key: absent at the start) */
bit epoch;              /* K/epoch */
byte floor;             /* F: the mtime of K/epoch, fixed when it is created */
bit gen[MAXG];          /* K/g-<n> */
bit rel[MAXG];          /* K/g-<n>.released */
byte hb[MAXG];          /* K/g-<n>/h~<p>: bit p set while process p's gate heartbeat entry exists */
byte rd[NP];            /* K/r~<p>~<attempt>: the attempt number of process p's reader entry, 0 = none */

/* ---- time and faults (no clock: see README "Time") ---- */
bit paused[NP];         /* stopped past staleMs: its heartbeats do not move */
bit crashed[NP];
byte faults;
byte removals;
byte hiwater;           /* 1 + the highest generation ever created: a re-created epoch gets at least this */
#ifdef SAME_TICK_EPOCH
byte lastFloor;         /* the floor of the life before: a coarse clock without the clock rule */
bit sameTick;           /* the removal and the next epoch fall within that life's epoch tick */
#endif

/* ---- each process's own memory (global so that faults and properties can see it) ---- */
byte cg[NP] = NONE;     /* the generation this process created and claims / holds */
bit trustOn[NP];        /* its gate claim's trust window is open (its Heartbeat counts beats) */
bit hbOn[NP];           /* its h~ exists as far as it knows (Heartbeat.start done, stop not yet) */
bit rdOn[NP];           /* its reader heartbeat runs */
bit lostG[NP];          /* its gate heartbeat is not fresh any more (gave up for good after a gap) */
bit lostR[NP];          /* same for its reader heartbeat */
bit aborted[NP];        /* lock.signal (ABORT_ONLY only) */
byte att[NP];           /* acquisitions started */
bit wHold[NP];          /* exclusive: drained, acquire() returned */
bit rHold[NP];          /* shared: registered, acquire() returned */

/* ---- ghosts for the properties ---- */
bit cs[NP];             /* passed its pre-action check, act not yet done, not paused since */
bit anyTok;
byte lastTok;           /* fencing token of the last acquisition */
byte lastTokOwner;
byte nfinished;         /* processes done (acquired, acted, released) or crashed */
bit fin[NP];

/* scratch variables of d_steps only (not part of the state) */
hidden byte hi;
hidden byte hj;
hidden byte hnew;
hidden byte res2;

/* newest generation folder present (any, valid or not) */
inline newestInto(v) {
  v = NONE;
  hi = 0;
  do
  :: hi < MAXG -> if :: gen[hi] -> v = hi :: else fi; hi++
  :: else -> break
  od
}

/*
 * A waiter may judge g-<n> stale only if the heartbeat it watches stopped: the h~ entry it reads belongs
 * to a paused or crashed process or to one that found its gate lost (a lost heartbeat never beats again,
 * even after its process resumes), or (no h~ yet) the folder's own mtime is watched and its creator is
 * paused, crashed or gone. Any other live process's heartbeat moves within staleMs.
 */
inline genStale(n, res) {
  res = 0;
  if
  :: gen[n] && hb[n] != 0 ->
     hi = 0;
     do
#ifndef NO_CRASH_TAKEOVER
     :: hi < NP -> if :: (hb[n] & BIT(hi)) && (paused[hi] || crashed[hi] || lostG[hi]) -> res = 1 :: else fi; hi++
#else
     :: hi < NP -> if :: (hb[n] & BIT(hi)) && (paused[hi] || lostG[hi]) -> res = 1 :: else fi; hi++
#endif
     :: else -> break
     od
  :: gen[n] && hb[n] == 0 ->
     res = 1;
     hi = 0;
     do
     :: hi < NP -> if :: cg[hi] == n && !hbOn[hi] && !paused[hi] && !crashed[hi] -> res = 0 :: else fi; hi++
     :: else -> break
     od
  :: else
  fi
}

/* GateClaim.stillOnDisk(): the newest valid generation is p's own, not released, and p's h~ is in it */
#ifdef OLD_FIRST_GEN
#define validGen(n) (1)
#else
#define validGen(n) (epoch && (n) >= floor)
#endif
inline gateOnDisk(p, res) {
  newestInto(hnew);
  res = (cg[p] != NONE && hnew == cg[p] && validGen(cg[p]) && !rel[cg[p]] && (hb[cg[p]] & BIT(p)) != 0)
}

/* the gate is held in the protocol's sense: on disk and its holder's heartbeat fresh */
inline wTrusted(p, res) {
  gateOnDisk(p, res);
  res = res && wHold[p] && !lostG[p]
}
#define rTrusted(p) (rHold[p] && !lostR[p] && rd[p] == att[p])

/* (b): never a trusted writer while a trusted reader holds */
inline checkNoWriterWithReader() {
  hj = 0;
  do
  :: hj < NEXCL ->
     wTrusted(hj, res2);
     if
     :: res2 ->
        hj = NEXCL;
        do
        :: hj < NP -> assert(!rTrusted(hj)); hj++
        :: else -> break
        od
     :: else -> hj++
     fi
  :: else -> break
  od
}

/* (e): fencing tokens of acquisitions strictly increase (one holder may use its own token again) */
inline takeToken(p, tok) {
  assert(!anyTok || tok > lastTok || (tok == lastTok && lastTokOwner == p));
  anyTok = 1;
  lastTok = tok;
  lastTokOwner = p
}

/* fire-and-forget rm -r of every g-<k> and g-<k>.released with k < below (collectGarbage) */
inline collect(below) {
  d_step {
    hi = 0;
    do
    :: hi < below -> gen[hi] = 0; rel[hi] = 0; hb[hi] = 0; hi++
    :: else -> break
    od;
    printf("P%d: collects generations below %d\n", _pid, below);
    hi = 0
  }
}

/* Heartbeat.stop() of the gate heartbeat: rm h~ (ENOENT ignored) */
inline stopGate() {
  d_step {
    if :: cg[_pid] != NONE -> hb[cg[_pid]] = hb[cg[_pid]] & ~BIT(_pid) :: else fi;
    hbOn[_pid] = 0;
    trustOn[_pid] = 0;
    lostG[_pid] = 0;
    aborted[_pid] = 0;
    cg[_pid] = NONE
  }
}

/* GateClaim.giveBack(): mkdir g-<n>.released (EEXIST/ENOENT ignored), then stop the heartbeat */
inline giveBack() {
  d_step { if :: kExists -> rel[cg[_pid]] = 1 :: else fi; printf("P%d: mkdir g-%d.released\n", _pid, cg[_pid]) };
  stopGate()
}

active [NP] proctype Proc() provided (!paused[_pid])
{
  byte Lnew = NONE;     /* the listing L (step 1): newest generation in it */
  bit Lep;              /* ... whether it had epoch */
  bit Lrel;             /* ... whether the newest was released */
  byte F;
  byte next;
  byte gcLater;         /* a pending collectGarbage: everything below it */
  bit ok;
  byte r;
  byte live;
  byte snap;            /* reader entry attempt being looked at in the drain */

  { skip;
acquire:
  assert(att[_pid] < MAXATT);
  att[_pid]++;
claim:
  /* step 1: L = readdir(K); may be used long after (a stale listing) */
  atomic { d_step { Lep = epoch; newestInto(Lnew); Lrel = (Lnew != NONE && rel[Lnew]) } };
#ifndef OLD_FIRST_GEN
  /* step 2, no epoch in L: mkdir -p K; mkdir K/epoch (EEXIST ok). One step: a removal between the two
     mkdirs only makes the second fail with ENOENT, and the loop looks again either way. */
  if
  :: !Lep ->
     d_step {
       kExists = 1;
#ifndef SAME_TICK_EPOCH
       if :: !epoch -> epoch = 1; floor = hiwater; printf("P%d: mkdir epoch, floor %d\n", _pid, floor) :: else fi;
#else
       if
       :: !epoch -> epoch = 1; floor = (sameTick -> lastFloor : hiwater); lastFloor = floor;
          printf("P%d: mkdir epoch, floor %d\n", _pid, floor)
       :: else
       fi;
#endif
       Lnew = NONE; Lrel = 0
     };
     goto claim
  :: else
  fi;
  /* step 2: stat epoch -> F (ENOENT: K removed meanwhile: look again), and decide from L */
  d_step {
    if
    :: !epoch -> next = NONE
    :: else ->
       F = floor;
       if
       :: Lnew == NONE || Lnew < F -> next = F     /* every contender computes the same name */
       :: else ->
          if
          :: Lrel -> next = Lnew + 1
          :: else -> genStale(Lnew, ok); next = (ok -> Lnew + 1 : NONE)    /* takeover, or wait */
          fi
       fi
    fi;
    printf("P%d: listing had newest %d (released %d), floor %d -> next %d\n", _pid, Lnew, Lrel, F, next);
    Lnew = NONE; Lrel = 0; Lep = 0; F = 0; ok = 0
  };
#else
  /* the old first generation: each contender's own clock (any number above everything used so far) */
  if
  :: Lnew == NONE -> d_step { Lrel = 0; Lep = 0 }; if :: next = hiwater :: next = hiwater + 1 fi;
     printf("P%d: empty listing -> own clock gives next %d\n", _pid, next)
  :: else ->
     d_step {
       if
       :: Lrel -> next = Lnew + 1
       :: else -> genStale(Lnew, ok); next = (ok -> Lnew + 1 : NONE)
       fi;
       printf("P%d: listing had newest %d (released %d) -> next %d\n", _pid, Lnew, Lrel, next);
       Lnew = NONE; Lrel = 0; Lep = 0; ok = 0
     }
  fi;
#endif
  if
  :: next == NONE -> goto claim     /* wait (poll / inotify) and look again */
  :: else
  fi;
  assert(next < MAXG);              /* bound check: raise MAXG */

  /* step 3: mkdir K/g-<next>, THE atomic step */
  d_step {
    if
    :: !kExists || gen[next] -> ok = 0          /* ENOENT or EEXIST */
    :: else ->
       gen[next] = 1; ok = 1;
       if :: next + 1 > hiwater -> hiwater = next + 1 :: else fi;
       cg[_pid] = next;
       lostG[_pid] = 0;
       aborted[_pid] = 0;
#ifndef TRUST_FROM_HB_START
       trustOn[_pid] = 1;                       /* the first beat counts from before the mkdir */
#endif
       printf("P%d: mkdir g-%d\n", _pid, next)
    fi;
    next = 0
  };
  if
  :: !ok ->
#ifdef OLD_FIRST_GEN
     kExists = 1;                               /* tryClaim: mkdir -p K after ENOENT */
#endif
     goto claim
  :: else -> ok = 0
  fi;

  /* step 4: start the heartbeat: mkdir g-<next>/h~me (ENOENT: collected or removed -> continue) */
  d_step {
    if
    :: kExists && gen[cg[_pid]] ->
       hb[cg[_pid]] = hb[cg[_pid]] | BIT(_pid); hbOn[_pid] = 1; trustOn[_pid] = 1; ok = 1;
       printf("P%d: heartbeat g-%d/h~%d\n", _pid, cg[_pid], _pid)
    :: else -> ok = 0
    fi
  };
  if
  :: !ok -> stopGate(); goto claim
  :: else -> ok = 0
  fi;

  /* step 5: re-check: L2 = readdir(K) (newest and its marker), then stat epoch */
  d_step { newestInto(Lnew); Lrel = (Lnew != NONE && rel[Lnew]) };
  d_step {
    ok = (Lnew == cg[_pid] && !Lrel && validGen(cg[_pid]));
    printf("P%d: re-check of g-%d: %d\n", _pid, cg[_pid], ok);
    Lnew = NONE; Lrel = 0
  };
  if
  :: !ok -> stopGate(); goto claim
  :: else -> ok = 0
  fi;

  /* step 6: collect garbage, now or late (fire and forget) */
  if
  :: gcLater != 0 -> collect(gcLater); gcLater = 0
  :: else
  fi;
  if
  :: collect(cg[_pid])
  :: gcLater = cg[_pid]
  fi;

  if
  :: !isReader(_pid) ->
     /* writer drain: stale reader entries are removed, live ones waited for */
drain:
     atomic { r = NEXCL; live = 0 };
     do
     :: r < NP ->
        d_step { snap = rd[r] };                /* readdir(K) sees r~<r>~<snap> */
        if
        :: snap != 0 ->
           d_step { ok = (rd[r] == snap && (paused[r] || crashed[r] || lostR[r])) };   /* observer.isStale */
           if
           :: ok -> d_step { if :: rd[r] == snap -> rd[r] = 0 :: else fi; ok = 0; printf("P%d: removes stale r~%d~%d\n", _pid, r, snap) }   /* rm -r r~ (may be late) */
           :: else -> live++
           fi
        :: else
        fi;
        snap = 0;
        r++
     :: else -> break
     od;
     r = 0;
     if
     :: live > 0 -> live = 0; goto drain
     :: else
     fi;
     d_step { wHold[_pid] = 1; printf("P%d: drained, holds g-%d\n", _pid, cg[_pid]); checkNoWriterWithReader() };

#ifdef ABORT_ONLY
     /* HeldLock's watchdog (every updateMs) aborts lock.signal once the lock is lost; after a pause the
        holder's own continuation may run before it */
     if
     :: d_step { gateOnDisk(_pid, ok); if :: !ok || lostG[_pid] -> aborted[_pid] = 1 :: else fi; ok = 0 }
     :: skip
     fi;
#endif
     /* the pre-action check right before the irreversible step; passing it opens the window (cs) */
     d_step {
#ifndef ABORT_ONLY
       gateOnDisk(_pid, ok);
       ok = ok && !lostG[_pid];                /* assertStillHeld() */
#else
       ok = !aborted[_pid];                    /* lock.signal.aborted: the watchdog may not have run yet */
#endif
       if
       :: ok ->
          /* (a): no other exclusive holder is between its check and its act */
          hj = 0;
          do
          :: hj < NEXCL -> assert(hj == _pid || !cs[hj]); hj++
          :: else -> break
          od;
          cs[_pid] = 1;
          printf("P%d: pre-action check passed for g-%d\n", _pid, cg[_pid]);
          takeToken(_pid, cg[_pid]);
          checkNoWriterWithReader()
       :: else
       fi
     };
     if
     :: ok ->
        ok = 0;
        /* the act: publish rename / the cleaner's delete */
        d_step {
          if
          :: _pid == CLEANER && cs[_pid] ->
             /* (c): the cleaner never deletes under a reader */
             hj = NEXCL;
             do
             :: hj < NP -> assert(!rTrusted(hj)); hj++
             :: else -> break
             od
          :: else
          fi;
          printf("P%d: acts (cleaner: delete, writer: publish) under g-%d, late %d\n", _pid, cg[_pid], !cs[_pid]);
          cs[_pid] = 0
        };
        wHold[_pid] = 0;
        giveBack()
     :: else ->
        /* lost: give back and retry (the copy fails with LOCK_LOST and is redelivered) */
        printf("P%d: pre-action check failed for g-%d\n", _pid, cg[_pid]);
        ok = 0;
        wHold[_pid] = 0;
        giveBack();
        goto acquire
     fi
  :: else ->
     /* reader: register under the gate */
     d_step {
       if
       :: kExists -> rd[_pid] = att[_pid]; rdOn[_pid] = 1; lostR[_pid] = 0; ok = 1
       :: else -> ok = 0                         /* ENOENT: K removed by hand */
       fi
     };
     if
     :: ok ->
        /* the gate must still be ours now that the entry exists */
        d_step {
          gateOnDisk(_pid, ok);
          ok = ok && !lostG[_pid];
          if
          :: ok ->
             rHold[_pid] = 1;
             printf("P%d: reader registered under g-%d\n", _pid, cg[_pid]);
             takeToken(_pid, cg[_pid]);
             checkNoWriterWithReader()
          :: else
          fi
        };
        if
        :: ok -> ok = 0
        :: else ->
           d_step { if :: rd[_pid] == att[_pid] -> rd[_pid] = 0 :: else fi; rdOn[_pid] = 0; lostR[_pid] = 0 };
           giveBack();
           goto acquire
        fi
     :: else -> giveBack(); goto acquire
     fi;
     /* release the gate: mkdir g-<n>.released, stop the gate heartbeat */
     giveBack();
     /* reading under the shared lock; then release: rm r~ */
     d_step {
       if :: rd[_pid] == att[_pid] -> rd[_pid] = 0 :: else fi;
       rdOn[_pid] = 0; lostR[_pid] = 0; rHold[_pid] = 0
     }
  fi;
  if
  :: gcLater != 0 -> collect(gcLater); gcLater = 0
  :: else
  fi;
  d_step { fin[_pid] = 1; nfinished++ }
  } unless { crashed[_pid] }
}

/* Faults: any process may be paused past staleMs or crash between any two steps; K may be removed. */
inline pause(k) {
  faults++;
  paused[k] = 1;
  printf("P%d: PAUSED\n", k);
  /* a gap past staleMs - safetyMarginMs: the holder gives its claims up for good */
  if :: trustOn[k] -> lostG[k] = 1 :: else fi;
  if :: rdOn[k] -> lostR[k] = 1 :: else fi;
  cs[k] = 0
}
inline crash(k) {
  faults++;
  crashed[k] = 1;
  paused[k] = 0;
  printf("P%d: CRASHED\n", k);
  cs[k] = 0;
  nfinished++
}
/* only while it has an entry or a claim: before that a pause or a crash is indistinguishable from a
   slow process or one that never came (interleaving covers both) */
#define canFault(k) (faults < MAXFAULTS && !paused[k] && !crashed[k] && !fin[k] && (cg[k] != NONE || rdOn[k]))
#define FAULTS_OF(k) \
  :: d_step { canFault(k) -> pause(k) } \
  :: d_step { canFault(k) -> crash(k) } \
  :: d_step { paused[k] -> paused[k] = 0; printf("P%d: resumed\n", k) }

active proctype Faults()
{
end_faults:
  do
  FAULTS_OF(0)
  FAULTS_OF(1)
#if NP > 2
  FAULTS_OF(2)
#endif
#if NP > 3
  FAULTS_OF(3)
#endif
#if NP > 4
  FAULTS_OF(4)
#endif
#if NP > 5
  FAULTS_OF(5)
#endif
  :: removals < MAXREMOVALS ->
     /* rm -r K by hand: every entry, epoch included; a step already decided runs late */
#ifdef SAME_TICK_EPOCH
     if :: sameTick = 1 :: sameTick = 0 fi;
#endif
     d_step {
       removals++;
       printf("K REMOVED BY HAND\n");
       kExists = 0; epoch = 0; floor = 0;
       hi = 0;
       do
       :: hi < MAXG -> gen[hi] = 0; rel[hi] = 0; hb[hi] = 0; hi++
       :: else -> break
       od;
       hi = 0;
       do
       :: hi < NP -> rd[hi] = 0; cs[hi] = 0; hi++
       :: else -> break
       od;
       hi = 0
     }
  od
}

#ifdef LIVENESS
/* (d): every process gets the lock (and finishes) unless it crashes */
ltl everyone_gets_the_lock { <> (nfinished == NP) }
#endif
