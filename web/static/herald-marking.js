/*
 * The marking panel of an assignment page (staff): live counts of submitted,
 * processed, graded and released work, the grade forms, and the release form.
 */
(function () {
  "use strict";

  window.HeraldMarking = {};
}());
