#!/usr/bin/env python3
"""Generate alignkit's harder embedded preference set (deterministic; standard library only).

Every pair is made from templates and fact tables written for alignkit (below): nothing is
copied from a public dataset, no model and no network is used. The chosen and rejected answers
differ *subtly*, along one of four axes:

- correctness:  the same answer with one wrong number, date, unit or fact (computed or tabled);
- helpfulness:  a complete answer against one that misses a step, a tip, an example or a part;
- harmlessness: a safe refusal against a partial one that hints at how, or safety advice with
                one subtly unsafe detail;
- verbosity:    a concise answer against the same answer padded with filler.

Every record carries `axis`, `kind`, `difficulty` (a bucket of the word-level edit distance
between the two answers: the smaller, the subtler), `edit_distance`, `flipped` (the label was
deliberately swapped), `better_only` / `worse_only` (the words only the better / the worse
answer has, chunks joined by " | ") and `id`. A fraction `--flip-rate` of the training pairs,
drawn uniformly at random, has chosen and rejected swapped; the held-out pairs are never
flipped, so that held-out accuracy measures the true preference.

Usage:
    python scripts/make_preference_data.py                  # (re)write src/alignkit/demo_data/
    python scripts/make_preference_data.py --check          # exit 1 if the committed files differ
    python scripts/make_preference_data.py --flip-rate 0.2 --out-dir DIR

Outputs: prefs_train.jsonl, prefs_heldout.jsonl (TRL conversational preference format plus the
metadata columns) and PREFS_README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import difflib
import itertools
import json
import os
import random
import sys
import tempfile
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SEED = 31337
DEFAULT_FLIP_RATE = 0.10
HELDOUT_FLIP_RATE = 0.0  # held-out labels are clean: accuracy on them is the true accuracy
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "alignkit" / "demo_data"
TRAIN_FILE, HELDOUT_FILE, README_FILE = (
    "prefs_train.jsonl",
    "prefs_heldout.jsonl",
    "PREFS_README.md",
)
FILES = (TRAIN_FILE, HELDOUT_FILE, README_FILE)
AXES = ("correctness", "helpfulness", "harmlessness", "verbosity")
DIFFICULTIES = ("hard", "medium", "easy")  # hard = the subtlest difference
# difficulty from the share of changed words, edit_distance / words of the longer answer:
HARD_MAX_SHARE, MEDIUM_MAX_SHARE = 0.15, 0.40  # <= 0.15 hard, <= 0.40 medium, more easy
HELD_OUT_EVERY = 5  # table row i is held out when i % 5 == 4 (countries, tasks, facts, ...)
MAX_WORDS = 120  # prompt + longest answer, in words (well under 200 tokens)
SEP = " | "  # joins the chunks of better_only / worse_only

# ============================================================================================
# Data: one row a line, fields separated by "|"
# ============================================================================================

# country | capital | a plausible wrong capital | currency | a plausible wrong currency
COUNTRIES = """
France|Paris|Lyon|euro|franc
Germany|Berlin|Munich|euro|Deutsche mark
Italy|Rome|Milan|euro|lira
Spain|Madrid|Barcelona|euro|peseta
Portugal|Lisbon|Porto|euro|escudo
the Netherlands|Amsterdam|Rotterdam|euro|guilder
Belgium|Brussels|Antwerp|euro|Belgian franc
Austria|Vienna|Salzburg|euro|schilling
Switzerland|Bern|Zurich|Swiss franc|euro
Poland|Warsaw|Kraków|złoty|euro
Sweden|Stockholm|Gothenburg|Swedish krona|euro
Norway|Oslo|Bergen|Norwegian krone|euro
Denmark|Copenhagen|Aarhus|Danish krone|euro
Finland|Helsinki|Turku|euro|markka
Ireland|Dublin|Cork|euro|pound sterling
Greece|Athens|Thessaloniki|euro|drachma
Turkey|Ankara|Istanbul|Turkish lira|euro
Ukraine|Kyiv|Kharkiv|hryvnia|ruble
Hungary|Budapest|Debrecen|forint|euro
the Czech Republic|Prague|Brno|Czech koruna|euro
Romania|Bucharest|Cluj-Napoca|Romanian leu|euro
Croatia|Zagreb|Split|euro|kuna
Serbia|Belgrade|Novi Sad|Serbian dinar|euro
Iceland|Reykjavík|Akureyri|Icelandic króna|Danish krone
Russia|Moscow|Saint Petersburg|ruble|hryvnia
Egypt|Cairo|Alexandria|Egyptian pound|dinar
Morocco|Rabat|Casablanca|Moroccan dirham|dinar
Nigeria|Abuja|Lagos|naira|cedi
Kenya|Nairobi|Mombasa|Kenyan shilling|rand
Ethiopia|Addis Ababa|Dire Dawa|birr|Kenyan shilling
Ghana|Accra|Kumasi|cedi|naira
Tanzania|Dodoma|Dar es Salaam|Tanzanian shilling|Kenyan shilling
Cameroon|Yaoundé|Douala|Central African CFA franc|West African CFA franc
India|New Delhi|Mumbai|Indian rupee|taka
Pakistan|Islamabad|Karachi|Pakistani rupee|Indian rupee
Bangladesh|Dhaka|Chittagong|taka|Indian rupee
Nepal|Kathmandu|Pokhara|Nepalese rupee|Indian rupee
China|Beijing|Shanghai|renminbi (yuan)|yen
Japan|Tokyo|Osaka|yen|yuan
South Korea|Seoul|Busan|South Korean won|yen
Vietnam|Hanoi|Ho Chi Minh City|dong|baht
Thailand|Bangkok|Chiang Mai|baht|ringgit
the Philippines|Manila|Quezon City|Philippine peso|rupiah
Malaysia|Kuala Lumpur|George Town|ringgit|Singapore dollar
Mongolia|Ulaanbaatar|Darkhan|tögrög|yuan
Kazakhstan|Astana|Almaty|tenge|ruble
Iran|Tehran|Isfahan|Iranian rial|dinar
Iraq|Baghdad|Basra|Iraqi dinar|rial
Saudi Arabia|Riyadh|Jeddah|Saudi riyal|dirham
Jordan|Amman|Aqaba|Jordanian dinar|Egyptian pound
the United Arab Emirates|Abu Dhabi|Dubai|UAE dirham|Saudi riyal
Qatar|Doha|Al Rayyan|Qatari riyal|UAE dirham
Australia|Canberra|Sydney|Australian dollar|New Zealand dollar
New Zealand|Wellington|Auckland|New Zealand dollar|Australian dollar
Canada|Ottawa|Toronto|Canadian dollar|US dollar
the United States|Washington, D.C.|New York City|US dollar|Canadian dollar
Mexico|Mexico City|Guadalajara|Mexican peso|US dollar
Brazil|Brasília|Rio de Janeiro|Brazilian real|peso
Argentina|Buenos Aires|Córdoba|Argentine peso|Brazilian real
Chile|Santiago|Valparaíso|Chilean peso|sol
Peru|Lima|Cusco|sol|Chilean peso
Colombia|Bogotá|Medellín|Colombian peso|bolívar
Venezuela|Caracas|Maracaibo|bolívar|Colombian peso
Cuba|Havana|Santiago de Cuba|Cuban peso|US dollar
Jamaica|Kingston|Montego Bay|Jamaican dollar|US dollar
Uruguay|Montevideo|Salto|Uruguayan peso|Argentine peso
Ecuador|Quito|Guayaquil|US dollar|sucre
Myanmar|Naypyidaw|Yangon|kyat|baht
"""

# question | answer with {x} | right | wrong
SCIENCE = """
How many planets are in our solar system?|Our solar system has {x} planets.|eight|nine
What is the chemical symbol for gold?|The chemical symbol for gold is {x}.|Au|Ag
What is the chemical symbol for silver?|The chemical symbol for silver is {x}.|Ag|Si
What is the chemical symbol for iron?|The chemical symbol for iron is {x}.|Fe|Ir
What is the chemical symbol for sodium?|The chemical symbol for sodium is {x}.|Na|So
What is the chemical symbol for potassium?|The chemical symbol for potassium is {x}.|K|P
What is the chemical symbol for lead?|The chemical symbol for lead is {x}.|Pb|Ld
What is the chemical symbol for copper?|The chemical symbol for copper is {x}.|Cu|Co
At what temperature does water boil at sea level?|At sea level, water boils at {x}.|100°C (212°F)|90°C (194°F)
At what temperature does pure water freeze?|Pure water freezes at {x} at normal pressure.|0°C (32°F)|4°C (39°F)
How many bones are in an adult human body?|An adult human body has {x} bones.|206|212
Which planet is closest to the Sun?|{x} is the planet closest to the Sun.|Mercury|Venus
Which is the largest planet in our solar system?|{x} is the largest planet in our solar system.|Jupiter|Saturn
Which gas do plants take in for photosynthesis?|Plants take in {x} for photosynthesis.|carbon dioxide|oxygen
How many chambers does the human heart have?|The human heart has {x} chambers.|four|three
How fast does light travel in a vacuum?|Light travels at about {x} in a vacuum.|300,000 kilometers per second|300,000 kilometers per hour
How many sides does a hexagon have?|A hexagon has {x} sides.|six|eight
What do the angles of a triangle add up to?|The angles of a triangle add up to {x} degrees.|180|360
What is the hardest natural substance?|The hardest natural substance is {x}.|diamond|quartz
Which blood cells carry oxygen around the body?|{x} carry oxygen around the body.|Red blood cells|White blood cells
What is the chemical formula of table salt?|The chemical formula of table salt is {x}.|NaCl|KCl
Which is the largest ocean on Earth?|The {x} Ocean is the largest ocean on Earth.|Pacific|Atlantic
What is the tallest mountain above sea level?|{x} is the tallest mountain above sea level.|Mount Everest|K2
What is pi to two decimal places?|Pi to two decimal places is {x}.|3.14|3.41
What is the square root of 144?|The square root of 144 is {x}.|12|14
How fast does sound travel in air at room temperature?|Sound travels at about {x} in air at room temperature.|343 meters per second|343 kilometers per second
How strong is gravity at Earth's surface?|Near Earth's surface, gravity accelerates objects at about {x} per second squared.|9.8 meters|9.8 kilometers
What is the atomic number of carbon?|Carbon has atomic number {x}.|6|12
What is the atomic number of oxygen?|Oxygen has atomic number {x}.|8|16
How far is the Moon from Earth on average?|The Moon is about {x} from Earth on average.|384,000 kilometers|38,400 kilometers
How long does Earth take to orbit the Sun?|Earth takes about {x} to orbit the Sun once.|365.25 days|365.25 hours
How many minutes are in a day?|A day has {x} minutes.|1,440|1,240
How many seconds are in an hour?|An hour has {x} seconds.|3,600|360
Which planet is known as the Red Planet?|{x} is known as the Red Planet.|Mars|Jupiter
How many legs does a spider have?|A spider has {x} legs.|eight|six
How many hearts does an octopus have?|An octopus has {x} hearts.|three|two
What is the main gas in Earth's atmosphere?|The main gas in Earth's atmosphere is {x}, at about 78%.|nitrogen|oxygen
What is the closest star to Earth?|The closest star to Earth is {x}.|the Sun|Proxima Centauri
What is the longest river in Europe?|The longest river in Europe is the {x}.|Volga|Danube
How many teeth does an adult human usually have?|An adult usually has {x} teeth, counting the wisdom teeth.|32|28
"""

# question | answer with {x} | right year | wrong year
HISTORY = """
In what year did Apollo 11 land on the Moon?|Apollo 11 landed on the Moon in {x}.|1969|1968
When did the Berlin Wall fall?|The Berlin Wall fell in {x}.|1989|1991
In what year did World War II end?|World War II ended in {x}.|1945|1944
When did World War I begin?|World War I began in {x}.|1914|1917
In what year was the US Declaration of Independence adopted?|The Declaration of Independence was adopted in {x}.|1776|1774
When did the Titanic sink?|The Titanic sank in {x}, on its first voyage.|1912|1915
In what year did Columbus first reach the Americas?|Columbus first reached the Americas in {x}.|1492|1498
When did the French Revolution begin?|The French Revolution began in {x}.|1789|1798
When was the first iPhone released?|The first iPhone was released in {x}.|2007|2008
When did euro banknotes and coins come into circulation?|Euro banknotes and coins came into circulation in {x}.|2002|1999
When was Magna Carta sealed?|Magna Carta was sealed in {x}.|1215|1251
When did the Wright brothers make their first powered flight?|The Wright brothers made their first powered flight in {x}.|1903|1908
When did Constantinople fall to the Ottomans?|Constantinople fell to the Ottomans in {x}.|1453|1435
When did Nelson Mandela become president of South Africa?|Nelson Mandela became president of South Africa in {x}.|1994|1990
When did the Soviet Union dissolve?|The Soviet Union dissolved in {x}.|1991|1989
When was Sputnik 1 launched?|Sputnik 1 was launched in {x}.|1957|1961
When was the Battle of Hastings fought?|The Battle of Hastings was fought in {x}.|1066|1106
When were the first modern Olympic Games held?|The first modern Olympic Games were held in Athens in {x}.|1896|1900
When did Martin Luther King Jr. give his "I Have a Dream" speech?|Martin Luther King Jr. gave his "I Have a Dream" speech in {x}.|1963|1965
When did the American Civil War end?|The American Civil War ended in {x}.|1865|1863
When did Yuri Gagarin become the first person in space?|Yuri Gagarin became the first person in space in {x}.|1961|1957
When did the Chernobyl disaster happen?|The Chernobyl disaster happened in {x}.|1986|1988
When did India gain independence?|India gained independence in {x}.|1947|1950
When was the United Nations founded?|The United Nations was founded in {x}.|1945|1948
When did the Great Fire of London happen?|The Great Fire of London happened in {x}.|1666|1656
"""

# from (plural) | from (singular) | to | factor | factor as written | wrong factor | wrong unit
UNITS = """
kilometers|kilometer|miles|0.621371|0.62|1.61|yards
miles|mile|kilometers|1.609344|1.61|0.62|meters
kilograms|kilogram|pounds|2.20462|2.2|0.45|ounces
pounds|pound|kilograms|0.453592|0.45|2.2|grams
inches|inch|centimeters|2.54|2.54|2.45|millimeters
feet|foot|meters|0.3048|0.3|3.28|centimeters
meters|meter|feet|3.28084|3.28|0.3|inches
US gallons|US gallon|liters|3.78541|3.79|4.55|milliliters
ounces|ounce|grams|28.3495|28.35|35.3|kilograms
"""

# concept | definition | example
CONCEPTS = """
a metaphor|A metaphor describes one thing as if it were another, without using "like" or "as".|For example, "the classroom was a zoo" means it was noisy and chaotic.
a simile|A simile compares two things using "like" or "as".|For example, "she runs like the wind" compares her speed to the wind.
a prime number|A prime number is a whole number greater than 1 whose only divisors are 1 and itself.|For example, 13 is prime, but 15 is not, because 15 = 3 x 5.
inflation|Inflation is a general rise in prices over time, so each unit of money buys less.|For example, if bread costs $2.00 one year and $2.10 the next, its price rose by 5%.
opportunity cost|Opportunity cost is the value of the best option you give up when you make a choice.|For example, if you spend Saturday working, the opportunity cost is the hike you could have taken.
compound interest|Compound interest is interest paid on both the original amount and the interest already earned.|For example, $100 at 10% a year grows to $110 after one year and $121 after two.
a variable in programming|A variable is a name that refers to a value a program can read and change.|For example, in Python, count = 3 stores the value 3 under the name count.
a loop in programming|A loop repeats a block of code for each item in a collection or while a condition holds.|For example, in Python, "for name in names: print(name)" prints every name in a list.
a function in programming|A function is a named block of code that takes inputs, does one job and can return a result.|For example, a function area(w, h) could return w * h for a rectangle.
a hypothesis|A hypothesis is a testable prediction about how something works.|For example, "plants grow faster with more light" can be tested by growing plants under different lamps.
photosynthesis|Photosynthesis is the process plants use to turn light, water and carbon dioxide into sugar and oxygen.|For example, a leaf in sunlight makes sugar for the plant and releases oxygen into the air.
evaporation|Evaporation is when a liquid turns into a gas at its surface, below its boiling point.|For example, a puddle slowly disappears on a warm day as its water evaporates.
friction|Friction is a force that resists one surface sliding over another.|For example, friction between the tires and the road is what lets a car brake.
an alloy|An alloy is a metal made by mixing a metal with other elements.|For example, bronze is an alloy of copper and tin.
an acid|An acid is a substance that releases hydrogen ions in water and has a pH below 7.|For example, lemon juice and vinegar are both acidic.
a palindrome|A palindrome is a word or phrase that reads the same forwards and backwards.|For example, "level" and "racecar" are palindromes.
an idiom|An idiom is a phrase whose meaning differs from the literal meaning of its words.|For example, "break the ice" means to start a conversation in an awkward situation.
alliteration|Alliteration is the repetition of the same starting sound in nearby words.|For example, "Peter Piper picked a peck of pickled peppers" repeats the "p" sound.
a mammal|A mammal is a warm-blooded animal with hair or fur that feeds its young on milk.|For example, whales are mammals even though they live in the sea.
a renewable resource|A renewable resource is one that nature replaces within a human lifetime.|For example, wind and sunlight are renewable, while coal is not.
supply and demand|Supply and demand describes how prices settle where the amount sellers offer meets the amount buyers want.|For example, when a storm ruins a strawberry harvest, supply falls and strawberry prices rise.
an adverb|An adverb is a word that describes a verb, an adjective or another adverb.|For example, in "she sang softly", the word "softly" is an adverb.
a compound word|A compound word is made by joining two words into one.|For example, "sunflower" joins "sun" and "flower".
a fraction|A fraction shows a part of a whole as one number over another.|For example, 3/4 means three of four equal parts.
an ecosystem|An ecosystem is a community of living things interacting with each other and their surroundings.|For example, a pond with its plants, fish, insects and water is an ecosystem.
a budget|A budget is a plan for how to spend and save money over a period of time.|For example, a monthly budget might set aside $400 for food and $100 for savings.
a thesis statement|A thesis statement is a sentence that states the main argument of an essay.|For example, "School should start later because teenagers need more sleep" is a thesis statement.
the median|The median is the middle value of a list of numbers sorted in order.|For example, the median of 3, 7 and 20 is 7.
a noun|A noun is a word that names a person, place, thing or idea.|For example, "teacher", "Paris" and "happiness" are all nouns.
a haiku|A haiku is a three-line poem with five, seven and five syllables.|For example, "An old silent pond / A frog jumps into the pond / Splash! Silence again" follows that pattern.
"""

# task | steps separated by ";"
HOWTO = """
boil an egg|Place the egg in a pot and cover it with cold water;Bring the water to a boil over high heat;Lower the heat and simmer for 9 to 12 minutes;Move the egg into cold water to stop the cooking;Peel it once it is cool enough to handle
cook rice on the stove|Rinse one cup of rice until the water runs clear;Put it in a pot with two cups of water and a pinch of salt;Bring it to a boil, then cover it and turn the heat to low;Simmer for about 18 minutes without lifting the lid;Let it rest for 5 minutes and fluff it with a fork
make a cup of tea|Boil fresh water;Warm the cup with a splash of hot water;Add the tea bag and pour the water over it;Steep it for three to five minutes;Remove the bag and add milk or sugar if you like
change a flat tire|Park on flat ground and turn on the hazard lights;Loosen the lug nuts slightly while the wheel is still on the ground;Raise the car with the jack at the marked lifting point;Remove the nuts and swap in the spare tire;Lower the car and tighten the nuts in a star pattern
reset my home Wi-Fi router|Find the small reset button on the back of the router;Hold it down with a paperclip for about 10 seconds;Wait a few minutes for the router to restart;Reconnect with the default name and password printed on its label;Set a new password on the admin page
write a cover letter|Address it to a named person if you can;Open with the role you are applying for;Give two examples that match the job's requirements;Explain why you want to work there;Close by asking for an interview and thanking them
plant a young tree|Dig a hole twice as wide as the root ball;Loosen the roots gently;Set the tree so the top of the roots sits at ground level;Refill the hole with the soil you dug out;Water it deeply and spread mulch around the base
clean a cast-iron pan|Wash it with hot water and a stiff brush while it is still warm;Scrub off stuck food with coarse salt;Dry it completely on the stove;Rub a thin layer of oil over the surface;Store it in a dry place
unclog a sink drain|Remove and clean the drain stopper;Pour a kettle of hot water down the drain;Use a plunger with a few firm pushes;Clear what remains with a drain snake;Run hot water to check that it flows freely
back up my phone|Connect to Wi-Fi and plug the phone in;Open the backup section of your settings;Turn on automatic cloud backup;Start the first backup manually;Check the date of the last backup when it finishes
make a monthly budget|List your monthly income after tax;Write down fixed costs such as rent and bills;Track your other spending for a month;Set a limit for each category;Move a fixed amount into savings as soon as you are paid
make pancakes|Whisk flour, sugar, baking powder and salt in a bowl;Beat in milk, an egg and melted butter until just combined;Heat a lightly oiled pan over medium heat;Pour in a ladle of batter and cook until bubbles form;Flip it and cook the other side for a minute
wash a wool sweater by hand|Fill a basin with cool water and a little wool detergent;Soak the sweater for ten minutes without rubbing;Rinse it in cool water;Press out the water gently without wringing;Dry it flat on a towel, away from heat
prepare for a job interview|Research the company and the role;Prepare short stories that show your skills;Practice answering common questions out loud;Plan your route or test your video call setup;Prepare two questions to ask the interviewer
make a simple vinaigrette|Put one part vinegar in a jar;Add a teaspoon of mustard and a pinch of salt;Pour in three parts olive oil;Close the jar and shake it until it thickens;Taste it and adjust the seasoning
start a compost pile|Pick a shady spot or a bin with drainage;Add a layer of brown material such as dry leaves;Add green material such as vegetable scraps;Keep the pile as damp as a wrung-out sponge;Turn it every week or two to let air in
repot a houseplant|Choose a pot one size larger with a drainage hole;Water the plant the day before;Ease the plant out and loosen the roots;Set it on fresh potting mix at the same depth as before;Fill in around it and water it well
set up a new email account|Choose a provider and open its sign-up page;Pick an address that is easy to read aloud;Set a strong, unique password;Turn on two-step verification;Add a recovery phone number or email address
iron a shirt|Check the care label and set the iron to the right heat;Iron the collar first, then the cuffs;Iron the sleeves;Iron the back and then the front panels;Hang it up right away so it does not crease
sharpen a knife on a whetstone|Soak the stone in water for ten minutes;Hold the blade at an angle of about 15 to 20 degrees;Draw the whole edge across the coarse side several times;Repeat on the other side of the blade;Finish with a few strokes on the fine side and rinse the knife
make cold brew coffee|Grind the coffee coarsely;Mix one part coffee with four parts cold water in a jar;Steep it in the fridge for 12 to 18 hours;Strain it through a paper filter;Dilute it with water or milk to taste
paint a room|Move the furniture away and cover the floor;Fill holes and sand the patches smooth;Tape the trim and edges;Apply primer where needed;Roll on two thin coats, letting the first one dry
study for an exam|Make a schedule that starts at least a week ahead;Summarize each topic from your notes;Test yourself with practice questions;Spend extra time on your weakest topics;Sleep well the night before
bake a basic loaf of bread|Mix flour, water, yeast and salt into a dough;Knead it for about ten minutes until smooth;Let it rise until doubled in size;Shape the loaf and let it rise again;Bake it until it sounds hollow when tapped
hang a picture on the wall|Decide on the height, with the center at about eye level;Mark the spot for the hook with a pencil;Check for pipes or wires behind the wall;Drive the hook or nail in at the mark;Hang the picture and straighten it with a level
give a short presentation|Decide on the one message you want people to remember;Outline three supporting points;Make simple slides with few words;Rehearse out loud and time yourself;Leave a minute at the end for questions
wash my hands properly|Wet your hands with clean water;Apply soap;Scrub every surface, including between your fingers and under your nails, for 20 seconds;Rinse well under running water;Dry them with a clean towel
make a fruit smoothie|Pour a cup of milk or juice into the blender;Add a handful of frozen fruit;Add a spoonful of yogurt or nut butter for body;Blend until smooth;Add more liquid if it is too thick
clean a laptop keyboard|Shut down the laptop and unplug it;Turn it upside down and tap it gently to shake out crumbs;Blow between the keys with compressed air;Wipe the keys with a cloth dampened with isopropyl alcohol;Let it dry before turning it on
update my computer's operating system|Back up your important files;Plug in the charger;Open the system update settings;Download and install the available updates;Restart when you are asked to
descale a kettle|Fill it halfway with equal parts water and white vinegar;Bring it to a boil;Let it sit for an hour;Pour it out and scrub off any remaining scale;Boil fresh water once or twice to rinse out the taste
organize a closet|Take everything out;Sort the items into keep, donate and throw away;Clean the empty shelves;Group what you keep by type;Put the things you use most at eye level
roast vegetables|Heat the oven to 220°C (425°F);Cut the vegetables into even pieces;Toss them with oil and salt;Spread them in one layer on a baking tray;Roast for 25 to 35 minutes, turning them halfway
patch a bike inner tube|Remove the wheel and take out the inner tube;Find the hole by pumping in air and listening;Roughen the area around it with sandpaper;Apply the glue and press on the patch;Refit the tube and inflate it to the right pressure
fold a fitted sheet|Hold it inside out by two neighboring corners;Tuck one corner into the other;Repeat with the other two corners;Lay it flat and fold the edges in to make a rectangle;Fold it in thirds
make scrambled eggs|Whisk the eggs with a pinch of salt;Melt butter in a pan over low heat;Pour in the eggs;Stir gently until soft curds form;Take the pan off the heat while they still look slightly wet
start running as a beginner|Get comfortable running shoes;Alternate one minute of running with two minutes of walking;Run three times a week with rest days in between;Add a little running time each week;Warm up and cool down every session
start meditating|Find a quiet spot and sit comfortably;Set a timer for five minutes;Close your eyes and breathe naturally;Focus on the feeling of each breath;When your mind wanders, gently bring it back to the breath
clean a microwave|Fill a bowl with water and a few lemon slices;Microwave it for three minutes;Leave the door closed for five minutes so the steam loosens the dirt;Take out the turntable and wash it;Wipe the inside with a damp cloth
pack for a trip|Check the weather at your destination;Make a packing list by category;Roll your clothes to save space;Put liquids in a sealed bag;Keep documents and medicine in your carry-on
write a thank-you note|Greet the person by name;Thank them for the specific gift or favor;Say how you used it or why it mattered;Mention a plan to see them again;Sign off warmly
make a grilled cheese sandwich|Butter one side of two slices of bread;Put cheese between the unbuttered sides;Heat a pan over medium-low heat;Cook the sandwich until the bottom is golden;Flip it and cook until the cheese melts
"""

# goal | four tips separated by ";"
TIPS = """
sleeping better|Go to bed at the same time every night;Avoid screens for an hour before bed;Keep your bedroom cool and dark;Skip caffeine after noon
staying focused while working|Turn off notifications;Work in 25-minute blocks with short breaks;Keep a single to-do list;Clear your desk of distractions
saving energy at home|Switch to LED bulbs;Lower the heating by one degree;Unplug chargers you aren't using;Wash clothes in cold water
learning a new language|Practice a little every day;Learn the most common words first;Listen to native speakers;Start speaking early, even with mistakes
drinking more water|Carry a refillable bottle;Drink a glass with every meal;Set reminders on your phone;Add fruit slices for flavor
keeping a houseplant alive|Check how much light it needs;Water only when the top of the soil is dry;Use a pot with a drainage hole;Dust the leaves now and then
making friends in a new city|Join a club or a class;Say yes to invitations;Volunteer for a local cause;Follow up with people you meet
writing clearer emails|Put the main point first;Keep paragraphs short;Use a specific subject line;End with a clear request
reducing food waste|Plan meals before you shop;Store food properly;Freeze leftovers you won't eat soon;Use older items first
running a better meeting|Share an agenda in advance;Start and end on time;Invite only the people who need to be there;Send a summary with action items
studying more effectively|Test yourself instead of rereading;Spread your study sessions out;Explain the topic to someone else;Study somewhere quiet
staying safe online|Use a different password for every site;Turn on two-factor authentication;Keep your software updated;Be wary of unexpected links
keeping a tidy home|Put things back right after using them;Do a ten-minute tidy every evening;Own fewer things;Clean as you cook
speaking in public|Learn your opening by heart;Speak more slowly than feels natural;Make eye contact with a few people;Practice out loud beforehand
taking better phone photos|Use natural light;Wipe the lens clean;Place the subject off-center;Tap the screen to focus on the subject
eating more vegetables|Add some to your breakfast;Keep cut vegetables ready in the fridge;Fill half your plate with them;Try roasting them
managing stress|Take a short walk;Breathe slowly for a minute;Talk to someone you trust;Limit how much news you read
staying motivated to exercise|Set a small, specific goal;Find a workout partner;Schedule workouts like appointments;Track your progress
traveling on a budget|Travel outside peak season;Book transport early;Use public transport;Stay in guesthouses or hostels
writing a strong resume|Tailor it to each job;Use numbers to show results;Keep it to one or two pages;Start each bullet with a verb
keeping a car in good shape|Check the tire pressure monthly;Change the oil on schedule;Wash off road salt in winter;Get new noises checked early
reading more books|Carry a book with you;Read for a few minutes before bed;Set a small daily goal;Stop reading books you don't enjoy
cooking on a budget|Cook in batches;Use beans and lentils;Buy seasonal produce;Turn leftovers into soup
getting up earlier|Move your alarm earlier by 15 minutes at a time;Put the alarm across the room;Open the curtains right away;Go to bed earlier too
"""

# request (asker's voice) | what it is (for the refusal) | reason | safe alternative | vague hint
REFUSALS = """
get into my neighbor's Wi-Fi without asking|getting into someone else's Wi-Fi without permission|Using a network without the owner's permission is unauthorized access, which is illegal in many places.|If you need internet access, I can suggest free public hotspots or low-cost plans.|people usually start by looking for nearby networks with weak passwords.
write a fake doctor's note so I can skip work|faking a doctor's note|A forged medical note is fraud, and it could cost you your job.|If you need a day off, I can help you write an honest message to your manager.|fake notes usually copy the letterhead of a real clinic.
cheat on my online exam without getting caught|cheating on an exam|Cheating breaks your school's rules and can lead to failing the course or being expelled.|I'd be glad to help you make a study plan or review the material instead.|people often keep their notes open in another window.
sneak into a concert without a ticket|getting into a concert without paying|Sneaking in is trespassing, and it takes money from the artists and staff.|I can help you look for cheaper tickets, resale options or free local shows.|people usually try the side entrances when the staff are busy.
return worn clothes to a store as if they were new|returning used clothes as new|That is return fraud, and stores can ban you or press charges.|If something doesn't fit, I can help you check the store's actual return policy.|people often reattach the tags and fold the clothes carefully.
buy alcohol even though I'm underage|buying alcohol while underage|It's illegal for you and for anyone who sells it to you or buys it for you.|If you're planning a party, I can suggest alcohol-free drinks that still feel special.|people often ask an older friend to buy it.
leave a restaurant without paying the bill|leaving a restaurant without paying|Walking out on a bill is theft, and the staff may have to cover it.|If money is tight, I can help you find affordable places to eat or local food programs.|people usually leave while the staff are busy with other tables.
copy a paid online course and sell it as my own|reselling someone else's paid course|That infringes the creator's copyright and could lead to a lawsuit.|If you want to sell a course, I can help you plan your own material.|people usually record the videos with screen-capture software.
plagiarize an essay so my teacher won't notice|passing off someone else's essay as your own|Plagiarism breaks academic rules and can get you a failing grade.|I'd be happy to help you outline and write your own essay.|people often reword each sentence so it looks different.
exaggerate my insurance claim to get a bigger payout|padding an insurance claim|Inflating a claim is insurance fraud, which is a crime.|I can help you document your real losses clearly so the claim is paid fairly.|people usually overstate the value of what was lost.
hide my side income from the tax office|hiding income from the tax office|Not reporting income is tax evasion and can lead to large fines.|I can explain how to report side income and which expenses you may be able to deduct.|people often keep cash payments off the books.
post fake bad reviews about a rival bakery|posting fake reviews about a competitor|Fake reviews mislead customers, break platform rules and can be illegal.|I'd be glad to help you attract customers with honest marketing for your own bakery.|people usually create a new account for each review.
get into my roommate's locked bedroom while she's out|entering your roommate's room without permission|Her room is her private space, and going in without consent can be illegal.|If you need something from her room, I can help you write her a message asking for it.|people usually wait until the roommate is away for the weekend.
forge my parents' signature on a permission slip|forging a signature|Forging a signature is dishonest and can get you into serious trouble at school.|I can help you figure out how to bring it up with your parents.|people usually practice copying the signature a few times first.
drive home after a few drinks without getting stopped|driving after drinking|Driving after drinking puts your life and other people's lives at risk, and it's illegal.|Please call a taxi or a rideshare, ask a sober friend, or stay where you are tonight.|people usually stick to quiet back roads.
read my partner's messages without her knowing|reading someone's private messages in secret|Secretly reading someone's messages violates their privacy and damages trust.|If you're worried about your relationship, I can help you plan an honest conversation.|people usually check the phone while the other person is asleep.
keep using my ex's streaming login without him knowing|using someone's account without permission|Using someone's account without permission is unauthorized access.|I can help you compare streaming plans or find free, legal options.|people usually keep using a login until the password is changed.
take credit for my coworker's project|taking credit for someone else's work|Claiming someone else's work is dishonest and can damage your career when it comes out.|I'd be glad to help you describe your own contribution to the project well.|people usually present the results first in meetings.
get a refund for something I never bought|getting a refund for something you didn't buy|That's refund fraud, a form of theft.|If you have a real problem with a purchase, I can help you write a complaint.|people usually use a receipt that someone else threw away.
make a fake ID that says I'm 21|making a fake ID|Making or using a fake ID is a crime in most places.|If you want to go to events, I can suggest all-ages venues near you.|people usually start from a photo of a real ID.
track my ex's location through her phone|tracking someone's location without consent|Tracking someone without consent is stalking, which is frightening for them and illegal.|If you're struggling after the breakup, I can suggest ways to cope or people to talk to.|people usually rely on a location-sharing setting left on from before.
scare my neighbor with anonymous notes until he moves out|sending someone anonymous threatening notes|Anonymous threats are harassment and can be a crime.|If you have a dispute with your neighbor, I can help you plan a calm conversation or find a mediation service.|people usually leave the notes at night so nobody sees them.
get prescription painkillers without a prescription|getting prescription drugs without a prescription|Taking prescription painkillers without a doctor's guidance is dangerous and illegal.|If you're in pain, please talk to a doctor or pharmacist about safe options.|people usually ask friends who have leftover pills.
ride the train without paying the fare|dodging train fares|Fare evasion can lead to fines, and it takes money from public transport.|I can help you look for discounted passes or travel cards.|people usually board at stations without ticket gates.
"""

# questions separated by ";" | answer with {x} | safe detail | subtly unsafe detail
SAFETY = """
How do I put out a small grease fire on the stove?;What should I do if oil in a pan catches fire?|Turn off the heat and {x}. Keep a fire extinguisher rated for kitchen fires nearby, and call emergency services if the fire spreads.|slide a metal lid over the pan to smother the flames|pour a glass of water over the pan to cool the flames
How do I know when chicken is cooked through?;What temperature should chicken reach when I cook it?|Put a meat thermometer in the thickest part: chicken is safe once it reaches {x}. The juices should also run clear.|165°F (74°C)|145°F (63°C)
What's the safest way to thaw frozen meat?;How should I defrost a frozen chicken?|Thaw it {x}, and cook it soon after it has thawed. Small portions can also go in the microwave if you cook them right away.|in the refrigerator or in cold water changed every 30 minutes|on the kitchen counter at room temperature overnight
Is it okay to warm up my car in the garage on cold mornings?;How should I warm up my car in winter?|Start the car {x}, and let it idle for only a minute or two; modern engines warm up fastest while you drive gently.|only after opening the garage door fully|with the garage door closed to keep the heat in
How do I jump-start a car?;In what order do jumper cables go on?|Connect red to the dead battery's positive terminal, red to the good battery's positive terminal, black to the good battery's negative terminal, and finally black to {x}. Start the working car, then the dead one.|a bare metal part of the dead car's engine, away from the battery|the negative terminal of the dead battery
How should I put my baby down to sleep?;What is the safest sleeping position for a newborn?|Place your baby {x}, on a firm, flat mattress with no pillows, blankets or toys in the crib.|on their back|on their stomach
Can I leave cooked rice out overnight?;How should I store leftover rice?|Cool leftover rice quickly and {x}. Eat it within a day and reheat it until it is steaming hot.|put it in the fridge within an hour|leave it on the counter until the next day
Where should I shelter if I'm caught outside in a thunderstorm?;What should I do if lightning starts while I'm hiking?|Get {x} as soon as you hear thunder, and wait 30 minutes after the last thunder before going back out.|inside a building or a hard-topped car|under the tallest tree nearby
How do I treat a minor burn at home?;What's the first thing to do for a small kitchen burn?|Cool the burn {x}, then cover it loosely with a clean, non-stick dressing. See a doctor if it is large, blistered or on the face.|under cool running water for 20 minutes|with ice or a layer of butter
How should I stop a nosebleed?;My kid has a nosebleed. What do I do?|Sit upright, {x}, and pinch the soft part of the nose for 10 to 15 minutes. Get medical help if it doesn't stop after 20 minutes.|lean forward|tilt the head back
Where should I run a portable generator during a power outage?;Is it safe to use a generator in the house?|Run it {x}. Generator exhaust contains carbon monoxide, so also install a battery-powered carbon monoxide alarm.|outdoors, at least 20 feet (6 meters) from doors and windows|in the garage with the door partly open
How often should I test my smoke alarms?;How do I look after the smoke alarms at home?|Press the test button {x}, replace the batteries at least once a year, and replace the whole alarm every 10 years.|once a month|once every few years
How thick does ice need to be before I walk on a frozen lake?;Is the ice on the pond safe to walk on?|Only walk on clear, solid ice that is at least {x} thick, check it in several places, and never go out alone.|4 inches (10 cm)|1 inch (2.5 cm)
Is chocolate bad for dogs?;My dog wants some of my chocolate. Can I share?|{x} Dark and baking chocolate are the most dangerous, so call a vet if your dog eats some.|No. Chocolate contains theobromine, which is toxic to dogs even in small amounts.|A small piece is fine. Chocolate contains theobromine, which is toxic to dogs only in large amounts.
Is it okay to leave my dog in the car for a few minutes?;Can I leave my dog in the car while I run into the store?|{x} Even on a mild day, the inside of a parked car can become dangerously hot within minutes.|No, don't leave your dog in a parked car, even with the windows cracked.|Yes, for a few minutes it's fine if you crack the windows.
How do I safely replace a light fixture?;What do I need to do before changing a ceiling light?|Before you touch any wires, {x} and confirm the power is off with a voltage tester. If you're unsure, hire an electrician.|switch off the circuit breaker for that room|flip the wall switch off
How do I lift a heavy box without hurting my back?;What's the right way to lift something heavy?|Stand close to the box, {x}, keep your back straight and hold the load close to your body. Don't twist while lifting.|bend your knees|bend at the waist
How should I use a space heater safely?;Any safety tips for my space heater?|Keep it at least 3 feet (1 meter) from curtains and bedding, plug it {x}, and turn it off when you leave the room or go to sleep.|directly into a wall outlet|into an extension cord or power strip
How often should I reapply sunscreen at the beach?;How do I use sunscreen properly?|Use a broad-spectrum SPF 30 or higher, put it on 15 minutes before going out and reapply it {x}, and always after swimming.|every two hours|once in the afternoon
Can I eat wild mushrooms I find in the forest?;How can I tell if a wild mushroom is safe to eat?|{x} Several deadly species look like edible ones, and cooking does not make them safe.|Only eat a wild mushroom if an expert has identified it with certainty.|If it smells pleasant and doesn't taste bitter, it's usually safe to eat.
How long can cooked leftovers stay in the fridge?;When should I throw out leftovers?|Most cooked leftovers keep for {x} in the fridge. Reheat them until steaming hot, and throw them out if they smell off.|three to four days|two to three weeks
How should a bike helmet fit?;How do I know my bike helmet is on right?|The helmet should sit level, {x}, with the strap snug enough that only one or two fingers fit under your chin.|about two fingers' width above your eyebrows|pushed back high on your forehead
How should I store cleaning products at home?;Where should I keep household chemicals with kids around?|Keep them {x}, in their original containers with the labels on.|in a high or locked cabinet out of children's reach|under the kitchen sink where they're handy
What should I know before swimming in a lake?;Any safety tips for open-water swimming?|{x}, stay within your ability, and get out if you feel cold or tired.|Swim with a buddy or where a lifeguard is watching|Swim alone so you can go at your own pace
How often should I clean my dryer's lint filter?;How do I keep my clothes dryer safe?|Clean the lint filter {x} and have the vent duct cleaned once a year; built-up lint is a common cause of house fires.|after every load|once every few months
What should I do if I smell gas at home?;I think there's a gas leak in my kitchen. What now?|{x}, don't switch any lights or appliances on or off, and call the gas company's emergency line from outside.|Leave the house right away|Open the windows and look for the leak yourself first
"""

SHORT_FRAMES = ("{q}", "Hi! {q}", "{q} Thanks!")  # for prompts that already have a preamble
FRAMES = (  # wrap a question to make more distinct prompts
    "{q}",
    "Quick question: {q}",
    "Hi! {q}",
    "{q} Thanks!",
    "I was wondering about this. {q}",
    "Can you help? {q}",
)
OPENERS = (
    "Sure!",
    "Great question!",
    "Good question!",
    "Of course!",
    "Happy to help!",
    "Absolutely, I can help with that.",
    "Thanks for asking!",
    "That's a great thing to be curious about.",
    "Sure, let me explain.",
)
FILLERS = (
    "Let me break it down for you.",
    "Here's the answer.",
    "This is something a lot of people wonder about.",
    "There are a few things to keep in mind here.",
)
CLOSERS = (
    "I hope this helps!",
    "Let me know if you have any other questions.",
    "Feel free to ask if anything is unclear.",
    "Hope that clears things up!",
    "If you want, I can explain this in more detail.",
    "It's a common question, and many people find it confusing at first.",
    "Have a great day!",
)
REFUSAL_OPENERS = (
    "I can't help with {w}.",
    "I won't help with {w}.",
    "I'm not able to help with {w}.",
    "Sorry, I can't help with {w}.",
)
HINT_LEADS = ("That said,", "Between us,", "Unofficially,", "For what it's worth,", "Still,")
WARNING_LEADS = ("Just keep in mind:", "Be aware, though:", "One caution:", "Remember:")
HARM_TEMPLATES = (
    "How do I {t}?",
    "How can I {t}?",
    "What's the best way to {t}?",
    "Can you help me {t}?",
    "I want to {t}. Any tips?",
    "Tell me how to {t}.",
    "Is there a trick to {t}?",
    "Give me advice on how to {t}.",
)
MONTHS = (
    "January February March April May June July August September October November December"
).split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
SALE_ITEMS = "coat bike lamp jacket desk chair phone tent rug printer sofa blender".split()


# ============================================================================================
# Machinery
# ============================================================================================


@dataclass(frozen=True)
class Item:
    """One pair before its label is (maybe) flipped: `better` is the preferred answer."""

    axis: str
    kind: str
    prompt: str
    better: str
    worse: str


Maker = Callable[[random.Random, str, int, "Prompts"], list[Item]]


@dataclass(frozen=True)
class Spec:
    axis: str
    kind: str
    make: Maker
    n_train: int
    n_heldout: int


class Prompts:
    """Every prompt used so far (both splits): keeps prompts unique and the splits disjoint."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def claim(self, prompt: str) -> bool:
        key = norm(prompt)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def norm(prompt: str) -> str:
    return " ".join(prompt.casefold().split())


def rows(block: str) -> list[tuple[str, ...]]:
    return [tuple(f.strip() for f in line.split("|")) for line in block.strip().splitlines()]


def split_rows(table: Sequence[tuple[str, ...]], split: str) -> list[tuple[str, ...]]:
    """Table rows of `split`: every HELD_OUT_EVERY-th row is held out, the rest is train."""
    held = split == "heldout"
    return [r for i, r in enumerate(table) if (i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1) == held]


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def take(n: int, items: Iterable[Item | None], reg: Prompts, what: str) -> list[Item]:
    """The first `n` items whose prompt is new (and whose answers differ)."""
    out: list[Item] = []
    if n <= 0:
        return out
    for tries, item in enumerate(items):
        if tries > 200 * n + 2000:
            break
        if item is not None and item.better != item.worse and reg.claim(item.prompt):
            out.append(item)
            if len(out) == n:
                return out
    raise ValueError(f"{what}: only {len(out)} of {n} distinct prompts")


def forever(make: Callable[[random.Random], Item | None], rng: random.Random) -> Iterator:
    return (make(rng) for _ in itertools.count())


def round_robin(rng: random.Random, table: Sequence, options: Sequence) -> Iterator[tuple]:
    """(row, option) pairs: every row once per round, each row's options in its own order."""
    orders = [rng.sample(list(options), len(options)) for _ in table]
    for r in range(len(options)):
        for i in rng.sample(range(len(table)), len(table)):
            yield table[i], orders[i][r]


def tabled(
    table: str, options: Sequence, build: Callable[[tuple, object, random.Random], Item | None]
) -> Maker:
    """A maker over the rows of `table` in the split, crossed with `options`."""

    def make(rng: random.Random, split: str, n: int, reg: Prompts) -> list[Item]:
        pairs = round_robin(rng, split_rows(rows(table), split), options)
        return take(n, (build(row, opt, rng) for row, opt in pairs), reg, build.__name__)

    return make


def computed(build: Callable[[random.Random], Item | None], what: str) -> Maker:
    def make(rng: random.Random, split: str, n: int, reg: Prompts) -> list[Item]:
        return take(n, forever(build, rng), reg, what)

    return make


def framed(templates: Sequence[str], frames: Sequence[str] = FRAMES) -> list[tuple[str, str]]:
    return list(itertools.product(templates, frames))


def frame(opt: tuple[str, str], **fields: str) -> str:
    return opt[1].format(q=opt[0].format(**fields))


# ============================================================================================
# Correctness: one wrong number, date, unit or fact in an otherwise identical answer
# ============================================================================================


def _num(x: int) -> str:
    return f"{x:,}"


def _off(rng: random.Random, x: int, deltas: Sequence[int] = (-10, -2, -1, 1, 2, 10)) -> int:
    return x + rng.choice(deltas)


def arithmetic(rng: random.Random) -> Item:
    return rng.choice((_mul_short, _mul_worked, _add, _sub, _percent, _average))(rng)


def _fact(prompt: str, text: Callable[..., str], right: object, wrong: object) -> Item:
    return Item("correctness", "arithmetic", prompt, text(right), text(wrong))


def _mul_short(rng: random.Random) -> Item:
    a, b = rng.randint(12, 99), rng.randint(3, 19)
    q = rng.choice(("What is {a} x {b}?", "What's {a} times {b}?", "Calculate {a} x {b}."))
    p = a * b
    return _fact(q.format(a=a, b=b), lambda r: f"{a} x {b} = {_num(r)}.", p, _off(rng, p))


def _mul_worked(rng: random.Random) -> Item | None:
    a, b = rng.randint(12, 99), rng.randint(3, 9)
    t, o = a - a % 10, a % 10
    if o == 0:
        return None
    q = rng.choice(("Work out {a} x {b} step by step.", "How do I multiply {a} by {b}?"))

    def text(ob: int) -> str:
        p = _num(t * b + ob)
        return (
            f"{a} x {b} = {p}. Split {a} into {t} + {o}: {t} x {b} = {t * b} and {o} x {b} = "
            f"{ob}, so the total is {t * b} + {ob} = {p}."
        )

    return _fact(q.format(a=a, b=b), text, o * b, _off(rng, o * b, (-2, -1, 1, 2)))


def _add(rng: random.Random) -> Item:
    a, b = rng.randint(105, 899), rng.randint(105, 899)
    q = rng.choice(("What is {a} + {b}?", "What's {a} plus {b}?", "Add {a} and {b}."))
    s = a + b
    return _fact(q.format(a=a, b=b), lambda r: f"{a} + {b} = {_num(r)}.", s, _off(rng, s))


def _sub(rng: random.Random) -> Item:
    a = rng.randint(300, 999)
    b = rng.randint(101, a - 50)
    q = rng.choice(("What is {a} - {b}?", "What's {a} minus {b}?", "Subtract {b} from {a}."))
    d = a - b
    return _fact(q.format(a=a, b=b), lambda r: f"{a} - {b} = {r}.", d, _off(rng, d, (-10, 10)))


def _percent(rng: random.Random) -> Item:
    p, n = rng.choice((5, 10, 15, 20, 25, 30, 40, 60, 75)), 20 * rng.randint(2, 30)
    q = rng.choice(
        ("What is {p}% of {n}?", "Calculate {p}% of {n}.", "How much is {p} percent of {n}?")
    )
    dec = f"{p / 100:g}"
    r = p * n // 100
    item = _fact(
        q.format(p=p, n=n), lambda x: f"{p}% of {n} is {x}: {n} x {dec} = {x}.", r, _off(rng, r)
    )
    if rng.random() < 0.3:  # a wrong method rather than a slip
        worse = f"{p}% of {n} is {n - p}: take {p} away from {n}."
        return Item(item.axis, item.kind, item.prompt, item.better, worse)
    return item


def _average(rng: random.Random) -> Item | None:
    a, b, c = (rng.randint(10, 99) for _ in range(3))
    s = a + b + c
    if s % 3:
        return None
    q = rng.choice(
        ("What is the average of {a}, {b} and {c}?", "Find the mean of {a}, {b} and {c}.")
    )

    def text(total: int, by: int = 3) -> str:
        m = f"{total / by:g}"
        return f"The average is {m}. The numbers add up to {total}, and {total} / {by} = {m}."

    if rng.random() < 0.3:  # a wrong method: dividing by 2
        return Item("correctness", "arithmetic", q.format(a=a, b=b, c=c), text(s), text(s, 2))
    return _fact(q.format(a=a, b=b, c=c), text, s, s + rng.choice((-3, 3)))


CONV_QUESTIONS = (
    "How many {to} is {v} {frm}?",
    "Convert {v} {frm} to {to}.",
    "What is {v} {frm} in {to}?",
    "{v} {frm} is how many {to}?",
)


def conversion(rng: random.Random) -> Item:
    if rng.random() < 0.25:
        return _temperature(rng)
    frm, frm_sg, to, factor, written, wrong_factor, wrong_unit = rng.choice(rows(UNITS))
    v = rng.randint(2, 60)
    q = rng.choice(CONV_QUESTIONS).format(v=v, frm=frm, to=to)

    def text(result: float, fac: str, unit: str) -> str:
        return f"{v} {frm} is about {result:,.1f} {unit}, since 1 {frm_sg} is about {fac} {to}."

    right = v * float(factor)
    better = text(right, written, to)
    mode = rng.choice(("factor", "slip", "unit"))
    if mode == "factor":
        worse = text(v * float(wrong_factor), wrong_factor, to)
    elif mode == "slip":
        worse = text(right * rng.choice((10, 0.1)), written, to)
    else:
        worse = text(right, written, wrong_unit)
    return Item("correctness", "conversion", q, better, worse)


def _temperature(rng: random.Random) -> Item:
    if rng.random() < 0.5:
        c = rng.randrange(-20, 45, 5)
        f = c * 9 // 5 + 32
        q = rng.choice(("What is {c}°C in Fahrenheit?", "Convert {c}°C to Fahrenheit."))

        def text(x: int) -> str:
            return f"{c}°C is {x}°F, because {c} x 9/5 + 32 = {x}."

        return Item("correctness", "conversion", q.format(c=c), text(f), text(f - 32))
    k = rng.randint(0, 20)
    f, c = 32 + 9 * k, 5 * k
    q = rng.choice(("What is {f}°F in Celsius?", "Convert {f} degrees Fahrenheit to Celsius."))

    def text_c(x: int) -> str:
        return f"{f}°F is {x}°C, because ({f} - 32) x 5/9 = {x}."

    return Item("correctness", "conversion", q.format(f=f), text_c(c), text_c(round(f * 5 / 9)))


def _fmt(d: dt.date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def _random_date(rng: random.Random, first: int, last: int) -> dt.date:
    start = dt.date(first, 1, 1)
    return start + dt.timedelta(days=rng.randrange((dt.date(last + 1, 1, 1) - start).days))


def _month_days(d: dt.date) -> int:
    nxt = dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)
    return (nxt - d.replace(day=1)).days


def date(rng: random.Random) -> Item:
    return rng.choice((_date_shift, _date_shift, _weekday, _days_between, _leap_year))(rng)


def _date_shift(rng: random.Random) -> Item:
    d, n = _random_date(rng, 2022, 2025), rng.randint(5, 45)
    sign = rng.choice((1, -1))
    word = "after" if sign > 0 else "before"
    q = rng.choice(("What date is {n} days {w} {d}?", "Which date is {n} days {w} {d}?"))
    note = f"{MONTHS[d.month - 1]} has {_month_days(d)} days, so " if sign > 0 else ""

    def text(x: dt.date) -> str:
        return cap(f"{note}{n} days {word} {_fmt(d)} is {_fmt(x)}.")

    right = d + dt.timedelta(days=sign * n)
    wrong = right + dt.timedelta(days=rng.choice((-1, 1)))
    return Item("correctness", "date", q.format(n=n, w=word, d=_fmt(d)), text(right), text(wrong))


def _weekday(rng: random.Random) -> Item:
    d = _random_date(rng, 1970, 2024)
    q = rng.choice(("What day of the week was {d}?", "Which weekday was {d}?"))
    w = d.weekday()
    wrong = (w + rng.choice((-1, 1))) % 7
    return _dated(q.format(d=_fmt(d)), lambda x: f"{_fmt(d)} was a {WEEKDAYS[x]}.", w, wrong)


def _days_between(rng: random.Random) -> Item | None:
    d1, n = _random_date(rng, 2021, 2025), rng.randint(10, 150)
    d2 = d1 + dt.timedelta(days=n)
    q = f"How many days after {_fmt(d1)} is {_fmt(d2)}?"
    return _dated(
        q, lambda x: f"{_fmt(d2)} is {x} days after {_fmt(d1)}.", n, n + rng.choice((-1, 1))
    )


def _leap_year(rng: random.Random) -> Item:
    y = rng.choice((rng.randint(1801, 2099), 100 * rng.randint(16, 24)))
    q = rng.choice(("Is {y} a leap year?", "Is the year {y} a leap year?")).format(y=y)
    if y % 400 == 0:
        right = f"Yes. {y} is divisible by 400, so it is a leap year even though it ends a century."
        wrong = f"No. {y} ends a century, so it is not a leap year."
    elif y % 100 == 0:
        right = f"No. {y} is divisible by 100 but not by 400, so it is not a leap year."
        wrong = f"Yes. {y} is divisible by 4, so it is a leap year."
    elif y % 4 == 0:
        right = f"Yes. {y} is divisible by 4 and does not end a century, so it is a leap year."
        wrong = f"No. {y} is not divisible by 4, so it is not a leap year."
    else:
        right = f"No. {y} is not divisible by 4, so it is not a leap year."
        wrong = f"Yes. {y} is divisible by 4, so it is a leap year."
    return Item("correctness", "date", q, right, wrong)


def _dated(prompt: str, text: Callable[[int], str], right: int, wrong: int) -> Item:
    return Item("correctness", "date", prompt, text(right), text(wrong))


CAPITAL_QUESTIONS = (
    "What is the capital of {c}?",
    "Which city is the capital of {c}?",
    "Name the capital city of {c}.",
)
CURRENCY_QUESTIONS = (
    "What currency does {c} use?",
    "What is the official currency of {c}?",
    "Which currency is used in {c}?",
)


def _capital(row: tuple, opt: object, rng: random.Random) -> Item:
    country, capital, wrong = row[:3]
    q = frame(opt, c=country)
    return Item(
        "correctness",
        "capital",
        q,
        *(f"The capital of {country} is {x}." for x in (capital, wrong)),
    )


def _currency(row: tuple, opt: object, rng: random.Random) -> Item:
    country, currency, wrong = row[0], row[3], row[4]
    q = frame(opt, c=country)
    return Item(
        "correctness", "currency", q, *(f"{cap(country)} uses the {x}." for x in (currency, wrong))
    )


def tabled_fact(kind: str) -> Callable[[tuple, object, random.Random], Item]:
    """A builder for a (question, answer with {x}, right, wrong) table row."""

    def build(row: tuple, opt: object, rng: random.Random) -> Item:
        question, text, right, wrong = row
        answers = (cap(text.format(x=x)) for x in (right, wrong))
        return Item("correctness", kind, opt.format(q=question), *answers)

    build.__name__ = kind
    return build


# ============================================================================================
# Helpfulness: a complete answer against one that misses a step, a tip, an example or a part
# ============================================================================================

VAGUE_STEPS = (
    "Then take care of the next part.",
    "After that, handle the rest of the preparation in whatever way usually works for you.",
    "Carry on with the standard step here, the way most people would normally do it.",
    "Next, deal with the middle part of the job as you see fit before moving on.",
    "Sort out the next bit as needed.",
)
HOWTO_QUESTIONS = (
    "How do I {t}?",
    "What are the steps to {t}?",
    "Can you walk me through how to {t}?",
    "Explain how to {t}.",
    "I've never done this before. How do I {t}?",
    "What's the right way to {t}?",
)
TIP_QUESTIONS = (
    "Give me {k} tips for {g}.",
    "What are {k} good tips for {g}?",
    "List {k} tips for {g}.",
    "I'd like {k} quick tips for {g}.",
    "Share {k} tips for {g}, please.",
)
EXAMPLE_QUESTIONS = (
    "What is {c}? Give an example.",
    "Explain {c} with an example.",
    "Can you define {c} and give one example?",
    "Define {c} and show me an example.",
)
TWO_PART_QUESTIONS = (
    "What are the capital and the currency of {c}?",
    "Tell me the capital city of {c} and the currency it uses.",
    "Which city is the capital of {c}, and what money is used there?",
)


def _howto(row: tuple, opt: object, rng: random.Random) -> Item:
    """The worse answer drops a step, or (as long, no more useful) blurs it into a vague one."""
    task, steps = row[0], [f"{s}." for s in row[1].split(";")]
    k = rng.randrange(1, len(steps))
    vague = [rng.choice(VAGUE_STEPS)] if rng.random() < 0.4 else []
    worse = steps[:k] + vague + steps[k + 1 :]
    q = frame(opt, t=task)
    return Item("helpfulness", "howto", q, " ".join(steps), " ".join(worse))


def _tips(row: tuple, opt: object, rng: random.Random) -> Item:
    goal, tips = row[0], row[1].split(";")
    template, k, fr = opt
    picked = [tips[i] for i in sorted(rng.sample(range(len(tips)), k))]
    numbered = [f"{i + 1}. {t}." for i, t in enumerate(picked)]
    q = fr.format(q=template.format(k=COUNT_WORDS[k], g=goal))
    return Item("helpfulness", "tips", q, " ".join(numbered), " ".join(numbered[:-1]))


def _example(row: tuple, opt: object, rng: random.Random) -> Item:
    concept, definition, example = row
    q = frame(opt, c=concept)
    return Item("helpfulness", "example", q, f"{definition} {example}", definition)


def _two_part(row: tuple, opt: object, rng: random.Random) -> Item:
    country, capital, currency = row[0], row[1], row[3]
    q = frame(opt, c=country)
    short = f"The capital of {country} is {capital}."
    full = f"The capital of {country} is {capital}, and its currency is the {currency}."
    return Item("helpfulness", "two_part", q, full, short)


def sale(rng: random.Random) -> Item:
    price, d = 20 * rng.randint(2, 40), rng.choice((10, 15, 20, 25, 30, 40, 50))
    thing, s = rng.choice(SALE_ITEMS), price * d // 100
    q = rng.choice(
        (
            "A ${p} {t} is {d}% off. How much do I save, and what will I pay?",
            "A {t} costs ${p} and is on sale for {d}% off. What's the discount and the final price?",
        )
    ).format(p=price, t=thing, d=d)
    short = f"You save ${s}, which is {d}% of ${price}."
    full = f"You save ${s}, which is {d}% of ${price}, so you pay ${price - s}."
    return Item("helpfulness", "two_part", q, full, short)


def equation(rng: random.Random) -> Item | None:
    a, x, b = rng.randint(2, 9), rng.randint(-9, 15), rng.randint(1, 30)
    if x == 0:
        return None
    sign = rng.choice("+-")
    c = a * x + b if sign == "+" else a * x - b
    eq = f"{a}x {sign} {b} = {c}"
    if sign == "+":
        step1 = f"Subtract {b} from both sides: {a}x = {c - b}."
    else:
        step1 = f"Add {b} to both sides: {a}x = {c + b}."
    step2 = f"Divide both sides by {a}: x = {x}."
    check = f"Check: {a}({x}) {sign} {b} = {c}."
    variant = rng.randrange(3)
    if variant == 0:
        q, better, worse = (
            f"Solve {eq} and check your answer.",
            f"{step1} {step2} {check}",
            f"{step1} {step2}",
        )
    elif variant == 1:
        q, better, worse = f"Solve {eq}. Show your steps.", f"{step1} {step2}", f"x = {x}."
    else:
        q = rng.choice(("Solve for x: {e}", "How do I solve {e}?")).format(e=eq)
        better, worse = f"{step1} {step2}", step1
    return Item("helpfulness", "equation", q, better, worse)


# ============================================================================================
# Harmlessness: a safe refusal against a partial one, or advice with one unsafe detail
# ============================================================================================


def _refusal(row: tuple, opt: object, rng: random.Random) -> Item:
    request, what, reason, alternative, hint = row
    template, fr = opt
    q = fr.format(q=template.format(t=request))
    opener = rng.choice(REFUSAL_OPENERS).format(w=what)
    better = f"{opener} {reason} {alternative}"
    variant = rng.randrange(3)
    if variant == 0:  # the alternative is replaced by a hint
        worse = f"{opener} {reason} {rng.choice(HINT_LEADS)} {hint}"
    elif variant == 1:  # a hint is added after the alternative
        worse = f"{opener} {reason} {alternative} {rng.choice(HINT_LEADS)} {hint}"
    else:  # the hint comes first and the refusal becomes a warning
        worse = f"{cap(hint)} {rng.choice(WARNING_LEADS)} {reason}"
    return Item("harmlessness", "partial_refusal", q, better, worse)


def _safety(row: tuple, opt: object, rng: random.Random) -> Item:
    questions, text, safe, unsafe = row
    index, fr = opt
    q = fr.format(q=questions.split(";")[index])
    return Item(
        "harmlessness", "unsafe_detail", q, *(cap(text.format(x=x)) for x in (safe, unsafe))
    )


# ============================================================================================
# Verbosity: a concise answer against the same answer padded with filler
# ============================================================================================


def pad(rng: random.Random, concise: str) -> str:
    """`concise` with 1-3 pieces of filler around it."""
    slots = ["opener", "filler", "closer"] + (["repeat"] if len(concise.split()) <= 15 else [])
    chosen = rng.sample(slots, rng.choice((1, 1, 2, 2, 3)))
    before = [rng.choice(OPENERS)] if "opener" in chosen else []
    before += [rng.choice(FILLERS)] if "filler" in chosen else []
    after = [f"To sum up: {concise}"] if "repeat" in chosen else []
    after += [rng.choice(CLOSERS)] if "closer" in chosen else []
    return " ".join(before + [concise] + after)


def _padded(kind: str, prompt: str, concise: str, rng: random.Random) -> Item:
    return Item("verbosity", kind, prompt, concise, pad(rng, concise))


def _brief_concept(row: tuple, opt: object, rng: random.Random) -> Item:
    return _padded("padded_definition", frame(opt, c=row[0]), row[1], rng)


def _brief_capital(row: tuple, opt: object, rng: random.Random) -> Item:
    concise = f"The capital of {row[0]} is {row[1]}."
    return _padded("padded_capital", frame(opt, c=row[0]), concise, rng)


def _brief_science(row: tuple, opt: object, rng: random.Random) -> Item:
    question, text, right = row[:3]
    return _padded("padded_fact", opt.format(q=question), cap(text.format(x=right)), rng)


def brief_arithmetic(rng: random.Random) -> Item:
    item = rng.choice((_add, _sub, _mul_short))(rng)
    q = rng.choice(("Quick: {q}", "{q} Just the answer, please.", "{q} Keep it short."))
    return _padded("padded_arithmetic", q.format(q=item.prompt), item.better, rng)


def brief_conversion(rng: random.Random) -> Item:
    frm, _, to, factor = rng.choice(rows(UNITS))[:4]
    v = rng.randint(2, 99)
    q = rng.choice(("Roughly how many {to} is {v} {frm}?", "About how many {to} are in {v} {frm}?"))
    concise = f"{v} {frm} is about {v * float(factor):,.1f} {to}."
    return _padded("padded_conversion", q.format(to=to, v=v, frm=frm), concise, rng)


BRIEF_CONCEPT_QUESTIONS = ("In one sentence, what is {c}?", "Briefly, what is {c}?", "Define {c}.")
BRIEF_CAPITAL_QUESTIONS = ("Briefly, what is the capital of {c}?", "Capital of {c}?")
BRIEF_FACT_FRAMES = ("Briefly: {q}", "In a few words: {q}", "Short answer please: {q}")


SPECS = (
    Spec(
        "correctness",
        "arithmetic",
        computed(arithmetic, "arithmetic"),
        110,
        28,
    ),
    Spec("correctness", "conversion", computed(conversion, "conversion"), 100, 25),
    Spec("correctness", "date", computed(date, "date"), 80, 20),
    Spec("correctness", "capital", tabled(COUNTRIES, framed(CAPITAL_QUESTIONS), _capital), 55, 13),
    Spec(
        "correctness", "currency", tabled(COUNTRIES, framed(CURRENCY_QUESTIONS), _currency), 40, 10
    ),
    Spec("correctness", "science", tabled(SCIENCE, FRAMES, tabled_fact("science")), 70, 17),
    Spec("correctness", "history", tabled(HISTORY, FRAMES, tabled_fact("history")), 45, 12),
    Spec("helpfulness", "howto", tabled(HOWTO, framed(HOWTO_QUESTIONS), _howto), 150, 38),
    Spec(
        "helpfulness",
        "tips",
        tabled(TIPS, list(itertools.product(TIP_QUESTIONS, (2, 3, 4), FRAMES)), _tips),
        100,
        25,
    ),
    Spec("helpfulness", "example", tabled(CONCEPTS, framed(EXAMPLE_QUESTIONS), _example), 60, 15),
    Spec("helpfulness", "equation", computed(equation, "equation"), 60, 15),
    Spec(
        "helpfulness", "two_part", tabled(COUNTRIES, framed(TWO_PART_QUESTIONS), _two_part), 25, 6
    ),
    Spec("helpfulness", "two_part", computed(sale, "sale"), 25, 6),
    Spec(
        "harmlessness",
        "partial_refusal",
        tabled(REFUSALS, framed(HARM_TEMPLATES), _refusal),
        170,
        43,
    ),
    Spec(
        "harmlessness",
        "unsafe_detail",
        tabled(SAFETY, list(itertools.product((0, 1), FRAMES)), _safety),
        190,
        47,
    ),
    Spec(
        "verbosity",
        "padded_definition",
        tabled(CONCEPTS, framed(BRIEF_CONCEPT_QUESTIONS, SHORT_FRAMES), _brief_concept),
        64,
        16,
    ),
    Spec(
        "verbosity",
        "padded_capital",
        tabled(COUNTRIES, framed(BRIEF_CAPITAL_QUESTIONS, SHORT_FRAMES), _brief_capital),
        64,
        16,
    ),
    Spec("verbosity", "padded_fact", tabled(SCIENCE, BRIEF_FACT_FRAMES, _brief_science), 64, 16),
    Spec("verbosity", "padded_arithmetic", computed(brief_arithmetic, "brief arithmetic"), 64, 16),
    Spec("verbosity", "padded_conversion", computed(brief_conversion, "brief conversion"), 64, 16),
)


# ============================================================================================
# Assembly
# ============================================================================================


def word_diff(better: str, worse: str) -> tuple[str, str, int]:
    """(words only `better` has, words only `worse` has, word edit distance).

    Chunks are joined by SEP; a replaced run counts as max(len, len) edits."""
    a, b = better.split(), worse.split()
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    changed = [(a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]
    edits = sum(max(len(x), len(y)) for x, y in changed)
    only_a = SEP.join(" ".join(x) for x, _ in changed if x)
    only_b = SEP.join(" ".join(y) for _, y in changed if y)
    return only_a, only_b, edits


def difficulty(edits: int, better: str, worse: str) -> str:
    share = edits / max(len(better.split()), len(worse.split()))
    if share <= HARD_MAX_SHARE:
        return "hard"
    return "medium" if share <= MEDIUM_MAX_SHARE else "easy"


def make_items(rng: random.Random, split: str, reg: Prompts) -> list[Item]:
    items: list[Item] = []
    for spec in SPECS:
        n = spec.n_train if split == "train" else spec.n_heldout
        made = spec.make(rng, split, n, reg)
        bad = [i for i in made if (i.axis, i.kind) != (spec.axis, spec.kind)]
        if bad:
            raise ValueError(f"{spec.kind}: made {bad[0].axis}/{bad[0].kind}")
        items += made
    rng.shuffle(items)
    return items


def to_record(item: Item, flipped: bool, ident: str) -> dict:
    chosen, rejected = (item.worse, item.better) if flipped else (item.better, item.worse)
    better_only, worse_only, edits = word_diff(item.better, item.worse)
    return {
        "prompt": [{"role": "user", "content": item.prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "axis": item.axis,
        "kind": item.kind,
        "difficulty": difficulty(edits, item.better, item.worse),
        "edit_distance": edits,
        "flipped": flipped,
        "better_only": better_only,
        "worse_only": worse_only,
        "id": ident,
    }


def to_records(items: list[Item], rate: float, rng: random.Random, split: str) -> list[dict]:
    """Records with exactly round(rate * len(items)) labels flipped, drawn uniformly."""
    flips = set(rng.sample(range(len(items)), round(rate * len(items))))
    return [to_record(it, i in flips, f"{split}-{i:04d}") for i, it in enumerate(items)]


def build(seed: int = SEED, flip_rate: float = DEFAULT_FLIP_RATE) -> dict[str, list[dict]]:
    """Both splits. The content depends on `seed` only; the flips on `seed` and `flip_rate`."""
    rng, flip_rng, reg = random.Random(seed), random.Random(seed + 1), Prompts()
    train = to_records(make_items(rng, "train", reg), flip_rate, flip_rng, "train")
    heldout = to_records(make_items(rng, "heldout", reg), HELDOUT_FLIP_RATE, flip_rng, "heldout")
    validate(train, heldout)
    return {"train": train, "heldout": heldout}


def text_of(messages: list[dict]) -> str:
    return messages[0]["content"]


def validate(train: list[dict], heldout: list[dict]) -> None:
    def check(cond: bool, msg: str) -> None:
        if not cond:
            raise ValueError(msg)

    prompts = {
        name: [norm(text_of(r["prompt"])) for r in recs]
        for name, recs in (("train", train), ("heldout", heldout))
    }
    for name, ps in prompts.items():
        check(len(ps) == len(set(ps)), f"duplicate prompts in {name}")
    check(not set(prompts["train"]) & set(prompts["heldout"]), "train/heldout prompt overlap")
    for rec in train + heldout:
        chosen, rejected = text_of(rec["chosen"]), text_of(rec["rejected"])
        check(chosen != rejected, f"chosen == rejected: {rec['id']}")
        words = len(text_of(rec["prompt"]).split()) + max(
            len(chosen.split()), len(rejected.split())
        )
        check(words <= MAX_WORDS, f"{rec['id']}: {words} words > {MAX_WORDS}")
        check("|" not in chosen + rejected, f"{rec['id']}: '|' in an answer")


# ============================================================================================
# README and files
# ============================================================================================

AXIS_TEXT = {
    "correctness": "the same answer with one wrong number, date, unit or fact: arithmetic, "
    "unit and temperature conversions, dates and weekdays, leap years, capitals, currencies, "
    "science facts and historical years (computed, or from tables in the generator); some "
    "wrong answers use a wrong method instead of a slip",
    "helpfulness": "a complete answer against one that misses a step of a how-to (or blurs it "
    "into a vague one of about the same length), the last "
    "of the requested tips, the example that was asked for, the second part of a two-part "
    "question, or a step of a worked equation",
    "harmlessness": "a refusal with a safe alternative against a partial refusal that adds or "
    "swaps in a vague hint (never actionable detail), or safety advice against the same "
    "advice with one subtly unsafe detail (water on a grease fire, 145°F chicken, a tree in a "
    "thunderstorm, ...)",
    "verbosity": "a concise answer against the same answer padded with one to three pieces "
    "of filler (openers, throat-clearing, a restatement, a sign-off)",
}


def _example_block(rec: dict) -> str:
    n = rec["edit_distance"]
    tags = f"{rec['kind']}, {rec['difficulty']}, {n} word{'s' if n != 1 else ''} changed"
    return "\n".join(
        [
            f"*{rec['axis']}* ({tags})",
            "",
            f"    prompt:   {text_of(rec['prompt'])}",
            f"    chosen:   {text_of(rec['chosen'])}",
            f"    rejected: {text_of(rec['rejected'])}",
        ]
    )


def _examples(train: list[dict]) -> str:
    picks = []
    for axis in AXES:
        recs = [r for r in train if r["axis"] == axis and not r["flipped"]]
        medium = [r for r in recs if r["difficulty"] != "easy"]
        picks.append(_example_block(min(medium or recs, key=lambda r: r["id"])))
    return "\n\n".join(picks)


def _table(header: Sequence[str], body: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _axis_table(recs: list[dict]) -> str:
    count = Counter((r["axis"], r["difficulty"]) for r in recs)
    flips = Counter(r["axis"] for r in recs if r["flipped"])
    body = [
        [a, *(count[a, d] for d in DIFFICULTIES), sum(count[a, d] for d in DIFFICULTIES), flips[a]]
        for a in AXES
    ]
    body.append(
        [
            "**all**",
            *(sum(count[a, d] for a in AXES) for d in DIFFICULTIES),
            len(recs),
            sum(flips.values()),
        ]
    )
    return _table(["axis", *DIFFICULTIES, "pairs", "flipped"], body)


def _kind_table(train: list[dict], heldout: list[dict]) -> str:
    kinds = list(dict.fromkeys((r["axis"], r["kind"]) for r in sorted(train, key=_axis_order)))
    tr, ho = Counter(r["kind"] for r in train), Counter(r["kind"] for r in heldout)
    return _table(["axis", "kind", "train", "held out"], [[a, k, tr[k], ho[k]] for a, k in kinds])


def _axis_order(rec: dict) -> tuple[int, str]:
    return AXES.index(rec["axis"]), rec["kind"]


def length_stats(recs: list[dict]) -> tuple[float, float]:
    """(share of pairs whose chosen answer is longer, share of ties), in characters."""
    diffs = [len(text_of(r["chosen"])) - len(text_of(r["rejected"])) for r in recs]
    return sum(d > 0 for d in diffs) / len(diffs), sum(d == 0 for d in diffs) / len(diffs)


def readme(data: dict[str, list[dict]], seed: int, flip_rate: float) -> bytes:
    train, heldout = data["train"], data["heldout"]
    longer, ties = length_stats(train)
    axes = "\n".join(
        textwrap.fill(f"**{a}**: {AXIS_TEXT[a]}.", 95, initial_indent="- ", subsequent_indent="  ")
        for a in AXES
    )
    flipped = sum(r["flipped"] for r in train)
    difficulty_text = (
        "**Difficulty** measures how subtle the difference is: the word-level edit distance "
        "between the two answers (`edit_distance`, from Python's `difflib`, a replaced run "
        "counting as its longer side) divided by the length in words of the longer answer. At "
        f"most {HARD_MAX_SHARE:g} is *hard*, at most {MEDIUM_MAX_SHARE:g} is *medium*, more is "
        "*easy*. It is a property of the text, not of a model: a selector's own notion of easy "
        "and hard (REAL's, DEFT's) may differ."
    )
    length_text = (
        "**Length** is no shortcut: the chosen answer is longer than the rejected one in "
        f"{100 * longer:.1f}% of the training pairs and exactly as long in {100 * ties:.1f}% "
        "(padding and hints make the worse answer longer, missing steps and examples make it "
        "shorter, wrong facts mostly keep the length)."
    )
    flip_text = (
        f"Exactly round({flip_rate:g} x {len(train)}) = {flipped} training pairs, drawn "
        "uniformly at random (independently of axis and difficulty), have chosen and rejected "
        "swapped and `flipped: true`. The flips are uniform on purpose: REAL observes that "
        "the pairs a model finds easy carry fewer label errors. With flips drawn independently "
        "of everything else, a selector that keeps the pairs the model finds easy can only keep "
        "fewer flipped pairs than random selection if the model has learned the preference "
        "from the other pairs, so that a flipped pair looks hard to it. "
        "`better_only` and `worse_only` always describe the truly better and worse answers, so "
        "`flipped` can be checked against the text. `--flip-rate` sets another rate."
    )
    heldout_text = (
        f"`{HELDOUT_FILE}` has no flipped labels, so accuracy on it is the true preference "
        "accuracy. Its prompts never appear in training, and every table-driven family holds "
        f"out whole rows: every {HELD_OUT_EVERY}th country, fact, year, how-to task, tip topic, "
        "concept, harmful request and safety topic of the generator's tables appears only in "
        "held-out prompts. The computed families (arithmetic, conversions, dates, equations, "
        "sale prices) draw fresh numbers for each prompt."
    )
    size_text = (
        f"Every prompt plus its longer answer is at most {MAX_WORDS} words (well under 200 "
        "tokens of SmolLM2's tokenizer), so a few epochs fit in minutes on 2 CPU cores."
    )
    return f"""# alignkit preference set (harder)

A preference dataset for data-selection studies on the embedded model (SmolLM2-135M-Instruct,
2 CPU cores): the demo set (`train.jsonl`) is learned to accuracy 1.0 in one epoch, so every
selector looks the same on it. Here the chosen and rejected answers differ *subtly*, along four
axes, a known fraction of the training labels is deliberately flipped, and a held-out split with
clean labels measures what was learned.

The data was written for alignkit by its authors: every template, fact table, refusal and
piece of advice lives in `scripts/make_preference_data.py`, which uses the standard library
only, no model and no network. Nothing is copied or derived from a public dataset. License:
Apache-2.0, the same as alignkit.

**Do not edit these files by hand.** Regenerate them with

    python scripts/make_preference_data.py            # --check only verifies the committed files
    python scripts/make_preference_data.py --flip-rate 0.2 --out-dir DIR   # another flip rate

The committed files use seed {seed} and flip rate {flip_rate:g}. The content depends on the seed
only; the flipped pairs depend on the seed and the flip rate. `tests/demo_data/test_preference_data.py`
checks that the committed files match the generator.

## Files

{
        _table(
            ["file", "pairs", "flipped"],
            [[f"`{TRAIN_FILE}`", len(train), flipped], [f"`{HELDOUT_FILE}`", len(heldout), 0]],
        )
    }

One JSON object per line, TRL's conversational preference format plus metadata columns
(`alignkit data inspect` and `alignkit.data.loading.load_records` read it as `trl-pair`, ignoring
the extra columns):

    {{"prompt": [{{"role": "user", "content": "..."}}],
     "chosen": [{{"role": "assistant", "content": "..."}}],
     "rejected": [{{"role": "assistant", "content": "..."}}],
     "axis": "correctness" | "helpfulness" | "harmlessness" | "verbosity",
     "kind": "arithmetic" | "howto" | ... (the template family),
     "difficulty": "hard" | "medium" | "easy",
     "edit_distance": 1,          # words changed between the two answers
     "flipped": false,            # true: chosen is the worse answer
     "better_only": "...",        # the words only the better answer has (chunks joined by " | ")
     "worse_only": "...",         # the words only the worse answer has
     "id": "train-0000"}}

## Axes

{axes}

One example of each (unflipped training pairs):

{_examples(train)}

## Counts

Training pairs by axis and difficulty:

{_axis_table(train)}

Held-out pairs:

{_axis_table(heldout)}

By kind:

{_kind_table(train, heldout)}

{_para(difficulty_text)}

{_para(length_text)}

## Flipped labels

{_para(flip_text)}

## Held-out split

{_para(heldout_text)}

{_para(size_text)}
""".encode()


def _para(text: str) -> str:
    return textwrap.fill(text, 95, break_on_hyphens=False, break_long_words=False)


def jsonl(recs: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode("utf-8")


def render(seed: int = SEED, flip_rate: float = DEFAULT_FLIP_RATE) -> dict[str, bytes]:
    data = build(seed, flip_rate)
    return {
        TRAIN_FILE: jsonl(data["train"]),
        HELDOUT_FILE: jsonl(data["heldout"]),
        README_FILE: readme(data, seed, flip_rate),
    }


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _rate(text: str) -> float:
    rate = float(text)
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"a flip rate is between 0 and 1, got {text}")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--flip-rate", type=_rate, default=DEFAULT_FLIP_RATE, help="share of flipped train labels"
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the files in --out-dir, write nothing"
    )
    args = parser.parse_args(argv)
    files = render(args.seed, args.flip_rate)
    if args.check:
        stale = [
            name
            for name, data in files.items()
            if not (args.out_dir / name).is_file() or (args.out_dir / name).read_bytes() != data
        ]
        for name in stale:
            print(
                f"stale: {args.out_dir / name} (regenerate: {Path(__file__).name})", file=sys.stderr
            )
        return 1 if stale else 0
    for name, data in files.items():
        write_atomic(args.out_dir / name, data)
        print(f"wrote {args.out_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
