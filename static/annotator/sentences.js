/*
 * Hip-fracture descriptor sentences for the live preview on the image page.
 *
 * The same grammar as mining/sentences.py (read its docstring for the rules); the output must stay
 * byte-identical to fracture_sentence() for every combination, partial forms included, and a test
 * compares the two. Usage:
 *
 *   DeepMinerSentences.fractureSentence({fracture: true, displacement: "moderately displaced",
 *     comminuted: true, impacted: false, location: "subcapital", avulsed_fragment: false})
 *   // "There is a moderately displaced, comminuted fracture of the subcapital neck of femur."
 *
 * A missing (null, undefined or "") displacement is left out and a missing location reads
 * "proximal femur"; an unknown displacement or location throws an Error.
 */
(function (root) {
  "use strict";

  var DISPLACEMENTS = ["undisplaced", "mildly displaced", "moderately displaced", "severely displaced"];
  var LOCATIONS = ["subcapital", "transcervical", "basicervical", "intertrochanteric", "subtrochanteric"];
  var NECK_LOCATIONS = ["subcapital", "transcervical", "basicervical"];
  var NO_FRACTURE_SENTENCE = "No fracture was identified on this study.";

  function checkChoice(name, value, choices) {
    if (value && choices.indexOf(value) < 0) {
      throw new Error("unknown " + name + " '" + value + "'");
    }
  }

  function article(phrase) {
    // Vowel letter == vowel sound for every word this grammar can put first.
    return "aeiou".indexOf(phrase.charAt(0)) >= 0 ? "an" : "a";
  }

  function locationPhrase(location) {
    if (!location) {
      return "proximal femur";
    }
    if (NECK_LOCATIONS.indexOf(location) >= 0) {
      return location + " neck of femur";
    }
    return location + " region of the femur";
  }

  function fractureSentence(d) {
    if (!d || !d.fracture) {
      return NO_FRACTURE_SENTENCE;
    }
    checkChoice("displacement", d.displacement, DISPLACEMENTS);
    checkChoice("location", d.location, LOCATIONS);
    var adjectives = [d.displacement, d.comminuted ? "comminuted" : null, d.impacted ? "impacted" : null]
      .filter(function (word) { return !!word; });
    // Coordinate adjectives: a comma between every pair, none before the noun.
    var nounPhrase = adjectives.length ? adjectives.join(", ") + " fracture" : "fracture";
    var avulsion = d.avulsed_fragment ? " with an avulsed fragment" : "";
    return "There is " + article(nounPhrase) + " " + nounPhrase + " of the " + locationPhrase(d.location) +
      avulsion + ".";
  }

  root.DeepMinerSentences = {
    fractureSentence: fractureSentence,
    NO_FRACTURE_SENTENCE: NO_FRACTURE_SENTENCE,
    DISPLACEMENTS: DISPLACEMENTS.slice(),
    LOCATIONS: LOCATIONS.slice(),
  };
})(typeof window !== "undefined" ? window : globalThis);
