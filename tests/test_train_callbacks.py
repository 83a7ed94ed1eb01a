"""The Trainer's observer interface (what ``pyconv train --serve`` hooks into): per-step and
per-epoch callbacks, a pause that is not training time, hyper-parameter changes from the next
step (with the schedule going on from the new rate), kept in the resumable state."""
import time

import numpy as np
import pytest

import pyconv
from pyconv import data, nn
from pyconv.train import Callback, StepInfo, Trainer, make_optimizer, make_schedule


def _setup(optimizer="sgd", schedule=None, epochs=2, n=96, seed=0):
    train, test = data.load_digits()
    train, test = train.subset(n), test.subset(40)
    pyconv.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 10))
    opt = make_optimizer(optimizer, model.parameters(), None)
    sched = make_schedule(schedule, opt, epochs)
    return model, opt, Trainer(model, train, test, epochs, opt, batch_size=32, seed=seed, schedule=sched)


def _weights(model):
    return [p.data.copy() for p in model.parameters()]


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_step_begin(self, trainer):
        self.events.append(("begin", trainer.epoch, trainer.batch))

    def on_step_end(self, trainer, info):
        assert all(p.grad is not None for p in trainer.model.parameters())  # the batch's gradients
        self.events.append(("end", info))

    def on_epoch_end(self, trainer):
        self.events.append(("epoch", trainer.epoch, len(trainer.history)))


def test_callbacks_see_every_step_and_epoch():
    _, _, trainer = _setup()
    rec = Recorder()
    assert trainer.run(callbacks=[rec]) == "done"
    ends = [e[1] for e in rec.events if e[0] == "end"]
    assert len(ends) == 2 * 3 and all(isinstance(i, StepInfo) for i in ends)
    assert [(i.epoch, i.batch, i.size) for i in ends] == [(e, b, 32) for e in (1, 2) for b in (1, 2, 3)]
    assert all(np.isfinite(i.loss) and 0 <= i.correct <= i.size and i.forward_seconds >= 0
               and i.backward_seconds >= 0 for i in ends)
    assert [e for e in rec.events if e[0] == "epoch"] == [("epoch", 1, 1), ("epoch", 2, 2)]
    assert rec.events[0] == ("begin", 0, 0) and rec.events[1][0] == "end"


def test_a_callback_that_does_nothing_changes_nothing():
    m1, _, t1 = _setup(optimizer="adam", schedule="cosine")
    t1.run()
    m2, _, t2 = _setup(optimizer="adam", schedule="cosine")
    t2.run(callbacks=[Callback(), Recorder()])
    for a, b in zip(_weights(m1), _weights(m2)):
        np.testing.assert_array_equal(a, b)
    assert [h["train_loss"] for h in t1.history] == [h["train_loss"] for h in t2.history]


def test_time_spent_in_on_step_begin_is_not_training_time():
    _, _, trainer = _setup(epochs=1)

    class Pause(Callback):
        def on_step_begin(self, trainer):
            if trainer.batch == 1:
                time.sleep(1.0)

    trainer.run(callbacks=[Pause()])
    assert trainer.history[0]["seconds"] < 0.9


def test_evaluating_in_a_callback_leaves_the_model_training():
    model, _, trainer = _setup(epochs=1)
    modes = []

    class Evaluates(Callback):
        def on_step_begin(self, trainer):
            trainer.model.eval()

        def on_step_end(self, trainer, info):
            modes.append(trainer.model.training)

    trainer.run(callbacks=[Evaluates()])
    assert modes == [True, True, True]


def test_stop_asked_during_on_step_begin_runs_no_further_batch():
    _, _, trainer = _setup(epochs=2)
    flag = {"stop": False}

    class StopAt(Callback):
        def on_step_begin(self, trainer):
            if trainer.batch == 2:
                flag["stop"] = True

    assert trainer.run(callbacks=[StopAt()], should_stop=lambda: flag["stop"]) == "stopped"
    assert (trainer.epoch, trainer.batch) == (0, 2)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_hyperparameters_change_from_the_next_step(optimizer):
    """Changing lr/momentum/weight decay before step k equals a run whose optimizer had them then."""
    m1, opt1, t1 = _setup(optimizer=optimizer, epochs=1)

    class Change(Callback):
        def on_step_begin(self, trainer):
            if trainer.batch == 1:
                trainer.set_hyperparameters(lr=0.01, momentum=0.5, weight_decay=1e-3)

    t1.run(callbacks=[Change()])
    assert t1.hyperparameters() == dict(lr=0.01, momentum=0.5, weight_decay=1e-3)
    m2, opt2, t2 = _setup(optimizer=optimizer, epochs=1)

    class ByHand(Callback):
        def on_step_begin(self, trainer):
            if trainer.batch == 1:
                opt2.lr = 0.01
                d = opt2.defaults
                if "betas" in d:
                    d["betas"] = (0.5, d["betas"][1])
                else:
                    d["momentum"] = 0.5
                d["weight_decay"] = 1e-3

    t2.run(callbacks=[ByHand()])
    for a, b in zip(_weights(m1), _weights(m2)):
        np.testing.assert_array_equal(a, b)
    m3, _, t3 = _setup(optimizer=optimizer, epochs=1)
    t3.run()
    assert any(not np.array_equal(a, b) for a, b in zip(_weights(m1), _weights(m3)))


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_a_new_learning_rate_rescales_the_schedule(schedule):
    _, opt, trainer = _setup(optimizer="sgd", schedule=schedule, epochs=6)
    sched = trainer.schedule
    for _ in range(2):
        sched.step()
    before = opt.lr
    trainer.set_hyperparameters(lr=before * 3)
    assert opt.lr == pytest.approx(before * 3)
    assert sched.lr_at(sched.epoch) == pytest.approx(before * 3)  # the schedule goes on from there
    nxt = sched.lr_at(sched.epoch + 1)
    sched.step()
    assert opt.lr == pytest.approx(nxt)


def test_changed_hyperparameters_are_part_of_the_resumable_state():
    _, opt, trainer = _setup(optimizer="sgd", schedule="cosine", epochs=3)
    trainer.set_hyperparameters(lr=0.02, momentum=0.3, weight_decay=0.01)
    meta, arrays = trainer.state()
    _, opt2, fresh = _setup(optimizer="sgd", schedule="cosine", epochs=3)
    opt2.lr = opt.lr  # the optimizer's own state_dict carries lr
    fresh.load_state(meta, arrays)
    assert fresh.hyperparameters() == dict(lr=0.02, momentum=0.3, weight_decay=0.01)
    assert fresh.schedule.base_lr == pytest.approx(trainer.schedule.base_lr)


def test_stopped_by_a_callback_before_an_epochs_first_batch_resumes_bitwise():
    """A pause at an epoch's start (its order already drawn) then Ctrl-C: the saved state keeps
    that order, so the resumed run is the uninterrupted one."""
    m1, _, whole = _setup(optimizer="adam", epochs=3)
    whole.run()
    m2, opt2, t2 = _setup(optimizer="adam", epochs=3)
    flag = {"stop": False}

    class StopAtEpochStart(Callback):
        def on_step_begin(self, trainer):
            if trainer.epoch == 1 and trainer.batch == 0:
                flag["stop"] = True

    assert t2.run(callbacks=[StopAtEpochStart()], should_stop=lambda: flag["stop"]) == "stopped"
    assert (t2.epoch, t2.batch) == (1, 0) and t2.order is not None
    meta, arrays = t2.state()
    model_state, opt_state = m2.state_dict(), opt2.state_dict()
    m3, opt3, t3 = _setup(optimizer="adam", epochs=3, seed=1)  # other initial weights: all comes from the state
    m3.load_state_dict(model_state)
    opt3.load_state_dict(opt_state)
    t3.load_state(meta, arrays)
    assert t3.run() == "done"
    for a, b in zip(_weights(m1), _weights(m3)):
        np.testing.assert_array_equal(a, b)
