"""Piano-roll pictures: files that open, notes and marks that show, bad input named."""
import matplotlib.image as mpimg
import numpy as np
import pytest

from engine.errors import InvalidMessage
from engine.notes import NOTE_DTYPE, make_notes
from engine.pianoroll import VOICE_COLOURS, label_rows, plot_pianoroll

SCALE = make_notes([(12 * i, 12 * i + 10, p)
                    for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])])
CHORDS = make_notes([(0, 48, 48), (0, 48, 52), (0, 48, 55), (48, 96, 53, 30), (48, 96, 57, 120)])


def _red(img):
    """Pixels drawn in the marks' crimson."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return (r > 0.7) & (g < 0.3) & (b < 0.35)


def _blue(img):
    """Pixels drawn in the notes' blue (at any velocity shade, on white)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return (b > r + 0.1) & (b > g + 0.05)


def test_writes_a_png_with_one_panel_per_piece(tmp_path):
    one = plot_pianoroll([SCALE], ["scale"], tmp_path / "one.png")
    two = plot_pianoroll([SCALE, CHORDS], ["scale", "chords"], tmp_path / "two.png")
    a, b = mpimg.imread(one), mpimg.imread(two)
    assert a.ndim == 3 and b.shape[0] > 1.5 * a.shape[0]  # taller: a second panel
    assert _blue(a).sum() > 500 and not _red(a).any()


def test_marks_draw_labelled_lines(tmp_path):
    plain = mpimg.imread(plot_pianoroll([SCALE], ["s"], tmp_path / "a.png"))
    marked = mpimg.imread(plot_pianoroll([SCALE], ["s"], tmp_path / "b.png",
                                         marks=[(2, "combat"), (6.5, "stealth")]))
    assert _red(marked).sum() > 100 and not _red(plain).any()


def test_empty_piece_and_other_formats(tmp_path):
    empty = np.zeros(0, NOTE_DTYPE)
    png = plot_pianoroll([empty, SCALE], ["silence", "scale"], tmp_path / "e.png")
    assert mpimg.imread(png).shape[0] > 0
    svg = plot_pianoroll([SCALE], ["s"], tmp_path / "sub" / "roll.svg")
    assert svg.read_text().lstrip().startswith("<?xml")


def test_bad_input_is_named(tmp_path):
    cases = [
        (dict(notes_list=[], titles=[], path=tmp_path / "x.png"), "notes_list"),
        (dict(notes_list=[SCALE], titles=["a", "b"], path=tmp_path / "x.png"), "titles"),
        (dict(notes_list=[SCALE], titles=["a"], path=tmp_path / "x.jpeg2"), "path"),
        (dict(notes_list=[SCALE], titles=["a"], path=tmp_path / "x.png",
              marks=[(float("nan"), "x")]), "marks"),
        (dict(notes_list=[SCALE], titles=["a"], path=tmp_path / "x.png",
              ticks_per_beat=0), "ticks_per_beat"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidMessage) as e:
            plot_pianoroll(**kwargs)
        assert e.value.field == field and e.value.allowed
    assert not (tmp_path / "x.png").exists()


def test_labels_of_close_marks_go_a_row_lower():
    # a 40-beat roll: labels need 4 beats; 8 and 9 are too close, 9 and 16 are not
    assert label_rows([0, 4, 8, 9, 11.5, 16], 40) == [0, 0, 0, 1, 2, 0]
    assert label_rows([0, 1, 2, 3], 400) == [0, 1, 2, 3]
    assert label_rows([], 10) == []


# an ensemble piece: channel = voice id (melody, bass, harmony, drums), stingers id 4
ROLL_VOICES = ("melody", "bass", "harmony", "drums", "stinger")
ENSEMBLE = make_notes([(0, 24, 72, 127, 0), (24, 48, 74, 127, 0),
                       (0, 48, 40, 127, 1), (48, 96, 43, 127, 1),
                       (0, 6, 36, 127, 3), (24, 30, 38, 127, 3), (48, 54, 36, 127, 3)])


def _near(img, colour, tol=0.02):
    """Pixels drawn in ``colour`` (notes at full velocity are opaque: the colour itself)."""
    return (np.abs(img[..., :3] - np.asarray(colour)) < tol).all(axis=-1)


def test_voices_are_drawn_each_in_its_colour_with_a_legend(tmp_path):
    img = mpimg.imread(plot_pianoroll([ENSEMBLE], ["ensemble"], tmp_path / "v.png",
                                      voices=ROLL_VOICES))
    counts = {name: int(_near(img, c).sum()) for name, c in VOICE_COLOURS.items()}
    # melody, bass and drums play; harmony and stingers do not, and are not in the legend
    assert min(counts["melody"], counts["bass"], counts["drums"]) > 300, counts
    assert counts["harmony"] == 0 and counts["stinger"] == 0, counts
    colours = list(VOICE_COLOURS.values())
    assert len(set(colours)) == len(colours)  # a colour per voice
    # the legend: a patch of each playing voice right of the panel, beyond every note
    legend_cols = np.flatnonzero(_near(img, VOICE_COLOURS["bass"]).any(axis=0))
    assert legend_cols.max() > 0.85 * img.shape[1]
    plain = mpimg.imread(plot_pianoroll([ENSEMBLE], ["one line"], tmp_path / "p.png"))
    assert _near(plain, VOICE_COLOURS["melody"]).sum() > 300
    assert not _near(plain, VOICE_COLOURS["bass"]).any()  # one line: one colour, no legend
    assert not _near(plain, VOICE_COLOURS["drums"]).any()


def test_bad_voices_are_named(tmp_path):
    for voices in (("melody", "piano"), "melody", ("melody", "bass"), ()):
        with pytest.raises(InvalidMessage) as e:
            plot_pianoroll([ENSEMBLE], ["x"], tmp_path / "x.png", voices=voices)
        assert e.value.field == "voices" and e.value.allowed
    assert not (tmp_path / "x.png").exists()
