"""The bilingual lexicon of the synthetic world: every English word with the Chinese we wrote for it.

Plain data only (tuples of strings), written by the project for ``generate.py``. Chinese measure
words (classifiers) are stored with the nouns that need them; verbs carry the English forms the
templates use (base, third person singular, past) so no inflection rules are guessed at run time.
"""
from __future__ import annotations

# (English given name, Chinese transliteration, gender "m"/"f")
WESTERN_NAMES = (
    ("Alice", "爱丽丝", "f"), ("Bob", "鲍勃", "m"), ("Tom", "汤姆", "m"), ("Lily", "莉莉", "f"),
    ("Jack", "杰克", "m"), ("Anna", "安娜", "f"), ("David", "大卫", "m"), ("Emma", "艾玛", "f"),
    ("Peter", "彼得", "m"), ("Mary", "玛丽", "f"), ("John", "约翰", "m"), ("Lucy", "露西", "f"),
    ("Mike", "迈克", "m"), ("Sarah", "莎拉", "f"), ("James", "詹姆斯", "m"), ("Kate", "凯特", "f"),
    ("Sam", "山姆", "m"), ("Linda", "琳达", "f"), ("Paul", "保罗", "m"), ("Helen", "海伦", "f"),
    ("Henry", "亨利", "m"), ("Grace", "格蕾丝", "f"), ("Oliver", "奥利弗", "m"), ("Sophia", "索菲亚", "f"),
    ("Daniel", "丹尼尔", "m"), ("Olivia", "奥利维亚", "f"), ("Leo", "利奥", "m"), ("Mia", "米娅", "f"),
    ("Frank", "弗兰克", "m"), ("Nina", "尼娜", "f"), ("Eric", "埃里克", "m"), ("Amy", "艾米", "f"),
    ("Victor", "维克多", "m"), ("Clara", "克拉拉", "f"), ("Oscar", "奥斯卡", "m"), ("Julia", "朱莉娅", "f"),
)

# Chinese names are built from a surname and a given name; English spells them in pinyin.
SURNAMES = (
    ("Li", "李"), ("Wang", "王"), ("Zhang", "张"), ("Liu", "刘"), ("Chen", "陈"), ("Yang", "杨"),
    ("Zhao", "赵"), ("Huang", "黄"), ("Zhou", "周"), ("Wu", "吴"), ("Xu", "徐"), ("Sun", "孙"),
    ("Hu", "胡"), ("Zhu", "朱"), ("Gao", "高"), ("Lin", "林"), ("He", "何"), ("Guo", "郭"),
    ("Ma", "马"), ("Luo", "罗"), ("Song", "宋"), ("Tang", "唐"), ("Han", "韩"), ("Feng", "冯"),
)
GIVEN_NAMES = (
    ("Ming", "明", "m"), ("Wei", "伟", "m"), ("Fang", "芳", "f"), ("Na", "娜", "f"), ("Jing", "静", "f"),
    ("Lei", "磊", "m"), ("Jun", "军", "m"), ("Hua", "华", "f"), ("Li", "丽", "f"), ("Qiang", "强", "m"),
    ("Min", "敏", "f"), ("Tao", "涛", "m"), ("Xin", "欣", "f"), ("Yu", "雨", "f"), ("Hao", "浩", "m"),
    ("Ting", "婷", "f"), ("Bo", "博", "m"), ("Lan", "兰", "f"), ("Kai", "凯", "m"), ("Yan", "燕", "f"),
    ("Jie", "杰", "m"), ("Mei", "梅", "f"), ("Feng", "峰", "m"), ("Xue", "雪", "f"), ("Peng", "鹏", "m"),
    ("Long", "龙", "m"), ("Qing", "青", "f"), ("Yun", "云", "f"), ("Gang", "刚", "m"), ("Hui", "慧", "f"),
)

# Syllables for the invented place names: English spelling -> one Chinese character.
# Every name in the world is made of these, so transliteration itself is learnable.
PLACE_SYLLABLES = (
    ("ka", "卡"), ("lo", "洛"), ("ra", "拉"), ("mi", "米"), ("ta", "塔"), ("sa", "萨"), ("na", "纳"),
    ("ri", "里"), ("do", "多"), ("be", "贝"), ("ni", "尼"), ("ve", "维"), ("mo", "莫"), ("ga", "加"),
    ("lu", "卢"), ("ro", "罗"), ("si", "西"), ("to", "托"), ("da", "达"), ("fa", "法"), ("pe", "佩"),
    ("so", "索"), ("ba", "巴"), ("ki", "基"), ("te", "特"), ("vo", "沃"), ("zu", "祖"), ("ha", "哈"),
    ("li", "利"), ("ma", "玛"), ("no", "诺"), ("ke", "克"), ("bo", "波"), ("di", "迪"), ("fi", "菲"),
    ("ya", "亚"), ("wa", "瓦"), ("ze", "泽"), ("tu", "图"), ("go", "戈"), ("me", "梅"), ("pa", "帕"),
)
# Closing syllables (a consonant ending) for the last part of a name.
PLACE_CODAS = (
    ("lan", "兰"), ("tan", "坦"), ("man", "曼"), ("ven", "文"), ("ron", "伦"), ("den", "登"),
    ("kin", "金"), ("sen", "森"), ("mon", "蒙"), ("dor", "多尔"), ("bel", "贝尔"), ("gar", "加尔"),
    ("rin", "林"), ("van", "万"), ("ton", "顿"), ("mar", "马尔"), ("zan", "赞"), ("lis", "利斯"),
)
COUNTRY_SUFFIX = ("ia", "亚")

REGIONS = (  # where a country lies on the continent
    ("north", "北部"), ("south", "南部"), ("east", "东部"), ("west", "西部"), ("centre", "中部"),
)

# What a country is famous for: (English noun, Chinese noun).
PRODUCTS = (
    ("tea", "茶叶"), ("silk", "丝绸"), ("rice", "大米"), ("cheese", "奶酪"), ("salt", "盐"),
    ("paper", "纸"), ("glass", "玻璃"), ("cotton", "棉花"), ("wool", "羊毛"), ("copper", "铜"),
    ("iron", "铁"), ("gold", "黄金"), ("timber", "木材"), ("apples", "苹果"), ("horses", "马"),
    ("fish", "鱼"), ("coffee", "咖啡"), ("honey", "蜂蜜"), ("pottery", "陶器"), ("oranges", "橙子"),
)

# City weather: (English adjective, Chinese predicate after 通常).
WEATHER = (
    ("hot", "很热"), ("cold", "很冷"), ("rainy", "多雨"), ("windy", "多风"), ("sunny", "晴朗"),
    ("snowy", "多雪"), ("dry", "很干燥"), ("warm", "很温暖"), ("mild", "很温和"), ("foggy", "多雾"),
)

# (English, Chinese, English article)
JOBS = (
    ("teacher", "老师"), ("doctor", "医生"), ("nurse", "护士"), ("farmer", "农民"),
    ("engineer", "工程师"), ("cook", "厨师"), ("driver", "司机"), ("writer", "作家"),
    ("painter", "画家"), ("singer", "歌手"), ("scientist", "科学家"), ("lawyer", "律师"),
    ("pilot", "飞行员"), ("police officer", "警察"), ("baker", "面包师"), ("fisherman", "渔民"),
    ("musician", "音乐家"), ("programmer", "程序员"), ("librarian", "图书管理员"), ("gardener", "园丁"),
    ("carpenter", "木匠"), ("tailor", "裁缝"), ("postman", "邮递员"), ("shopkeeper", "店主"),
    ("dancer", "舞蹈演员"), ("reporter", "记者"), ("architect", "建筑师"), ("accountant", "会计"),
    ("photographer", "摄影师"), ("translator", "翻译"),
)

# Foods a person likes (English plural or mass noun, Chinese).
FOODS = (
    ("noodles", "面条"), ("dumplings", "饺子"), ("rice", "米饭"), ("bread", "面包"), ("cake", "蛋糕"),
    ("fish", "鱼"), ("soup", "汤"), ("tofu", "豆腐"), ("eggs", "鸡蛋"), ("cheese", "奶酪"),
    ("tomatoes", "西红柿"), ("potatoes", "土豆"), ("carrots", "胡萝卜"), ("watermelon", "西瓜"),
    ("strawberries", "草莓"), ("peaches", "桃子"), ("mangoes", "芒果"), ("chocolate", "巧克力"),
    ("ice cream", "冰淇淋"), ("porridge", "粥"), ("apples", "苹果"), ("bananas", "香蕉"),
    ("grapes", "葡萄"), ("pancakes", "煎饼"), ("mushrooms", "蘑菇"), ("beef", "牛肉"),
    ("chicken", "鸡肉"), ("cabbage", "白菜"), ("corn", "玉米"), ("pears", "梨"),
)

# Portions eaten or drunk in stories: (English phrase, Chinese phrase, verb "eat"/"drink").
MEALS = (
    ("a bowl of noodles", "一碗面条", "eat"), ("some dumplings", "一些饺子", "eat"),
    ("an apple", "一个苹果", "eat"), ("two eggs", "两个鸡蛋", "eat"), ("a piece of cake", "一块蛋糕", "eat"),
    ("some rice", "一些米饭", "eat"), ("a bowl of soup", "一碗汤", "eat"), ("a sandwich", "一个三明治", "eat"),
    ("some bread", "一些面包", "eat"), ("a banana", "一根香蕉", "eat"), ("a peach", "一个桃子", "eat"),
    ("some fried rice", "一些炒饭", "eat"), ("a cup of tea", "一杯茶", "drink"),
    ("a glass of milk", "一杯牛奶", "drink"), ("a cup of coffee", "一杯咖啡", "drink"),
    ("some orange juice", "一些橙汁", "drink"), ("a glass of water", "一杯水", "drink"),
)

# Countable things: (singular, plural, Chinese, classifier).
THINGS = (
    ("book", "books", "书", "本"), ("pen", "pens", "笔", "支"), ("cup", "cups", "杯子", "个"),
    ("bag", "bags", "包", "个"), ("hat", "hats", "帽子", "顶"), ("chair", "chairs", "椅子", "把"),
    ("table", "tables", "桌子", "张"), ("bicycle", "bicycles", "自行车", "辆"), ("car", "cars", "汽车", "辆"),
    ("boat", "boats", "船", "条"), ("kite", "kites", "风筝", "个"), ("umbrella", "umbrellas", "雨伞", "把"),
    ("clock", "clocks", "钟", "个"), ("letter", "letters", "信", "封"), ("map", "maps", "地图", "张"),
    ("painting", "paintings", "画", "幅"), ("ball", "balls", "球", "个"), ("box", "boxes", "盒子", "个"),
    ("key", "keys", "钥匙", "把"), ("lamp", "lamps", "灯", "盏"), ("shirt", "shirts", "衬衫", "件"),
    ("coat", "coats", "外套", "件"), ("basket", "baskets", "篮子", "个"), ("bottle", "bottles", "瓶子", "个"),
    ("computer", "computers", "电脑", "台"), ("phone", "phones", "手机", "部"), ("guitar", "guitars", "吉他", "把"),
    ("ring", "rings", "戒指", "枚"), ("flower", "flowers", "花", "朵"), ("tree", "trees", "树", "棵"),
    ("house", "houses", "房子", "座"), ("bridge", "bridges", "桥", "座"), ("ticket", "tickets", "票", "张"),
    ("newspaper", "newspapers", "报纸", "份"), ("candle", "candles", "蜡烛", "支"), ("blanket", "blankets", "毯子", "条"),
    ("notebook", "notebooks", "笔记本", "本"), ("pencil", "pencils", "铅笔", "支"), ("window", "windows", "窗户", "扇"),
    ("door", "doors", "门", "扇"), ("apple", "apples", "苹果", "个"), ("orange", "oranges", "橙子", "个"),
    ("egg", "eggs", "鸡蛋", "个"), ("watermelon", "watermelons", "西瓜", "个"), ("cake", "cakes", "蛋糕", "块"),
    ("stone", "stones", "石头", "块"), ("shoe", "shoes", "鞋", "只"), ("mirror", "mirrors", "镜子", "面"),
    ("bowl", "bowls", "碗", "个"), ("scarf", "scarves", "围巾", "条"), ("desk", "desks", "书桌", "张"),
    ("photo", "photos", "照片", "张"), ("toy", "toys", "玩具", "个"), ("vase", "vases", "花瓶", "个"),
)

# Animals: (singular, plural, Chinese, classifier).
ANIMALS = (
    ("cat", "cats", "猫", "只"), ("dog", "dogs", "狗", "只"), ("rabbit", "rabbits", "兔子", "只"),
    ("parrot", "parrots", "鹦鹉", "只"), ("horse", "horses", "马", "匹"), ("goldfish", "goldfish", "金鱼", "条"),
    ("turtle", "turtles", "乌龟", "只"), ("hamster", "hamsters", "仓鼠", "只"), ("goat", "goats", "山羊", "只"),
    ("duck", "ducks", "鸭子", "只"), ("sheep", "sheep", "绵羊", "只"), ("cow", "cows", "奶牛", "头"),
    ("pig", "pigs", "猪", "头"), ("bird", "birds", "鸟", "只"), ("tiger", "tigers", "老虎", "只"),
    ("panda", "pandas", "熊猫", "只"), ("elephant", "elephants", "大象", "头"), ("monkey", "monkeys", "猴子", "只"),
    ("frog", "frogs", "青蛙", "只"), ("owl", "owls", "猫头鹰", "只"), ("goose", "geese", "鹅", "只"),
    ("mouse", "mice", "老鼠", "只"), ("deer", "deer", "鹿", "只"), ("fox", "foxes", "狐狸", "只"),
    ("wolf", "wolves", "狼", "只"), ("lion", "lions", "狮子", "只"), ("snake", "snakes", "蛇", "条"),
    ("dolphin", "dolphins", "海豚", "只"), ("squirrel", "squirrels", "松鼠", "只"), ("bee", "bees", "蜜蜂", "只"),
)
PETS = ("cat", "dog", "rabbit", "parrot", "goldfish", "turtle", "hamster", "bird", "duck", "horse")

# Adjectives for things: (English, Chinese before a noun, Chinese as a predicate after 这个X).
ADJECTIVES = (
    ("big", "大", "很大"), ("small", "小", "很小"), ("new", "新", "是新的"), ("old", "旧", "很旧"),
    ("red", "红色的", "是红色的"), ("blue", "蓝色的", "是蓝色的"), ("green", "绿色的", "是绿色的"),
    ("yellow", "黄色的", "是黄色的"), ("white", "白色的", "是白色的"), ("black", "黑色的", "是黑色的"),
    ("beautiful", "漂亮的", "很漂亮"), ("cheap", "便宜的", "很便宜"), ("expensive", "很贵的", "很贵"),
    ("clean", "干净的", "很干净"), ("heavy", "很重的", "很重"), ("light", "很轻的", "很轻"),
)
OPPOSITES = (
    ("big", "small", "大", "小"), ("new", "old", "新", "旧"), ("heavy", "light", "重", "轻"),
    ("cheap", "expensive", "便宜", "贵"), ("clean", "dirty", "干净", "脏"), ("hot", "cold", "热", "冷"),
    ("long", "short", "长", "短"), ("fast", "slow", "快", "慢"), ("happy", "sad", "高兴", "难过"),
    ("early", "late", "早", "晚"), ("high", "low", "高", "低"), ("open", "closed", "开着", "关着"),
    ("full", "empty", "满", "空"), ("easy", "difficult", "容易", "难"), ("strong", "weak", "强", "弱"),
)

# Colours (a person's favourite colour).
COLOURS = (
    ("red", "红色"), ("blue", "蓝色"), ("green", "绿色"), ("yellow", "黄色"), ("white", "白色"),
    ("black", "黑色"), ("purple", "紫色"), ("orange", "橙色"), ("pink", "粉色"), ("grey", "灰色"),
    ("brown", "棕色"),
)

# Activities: (English base, third person singular, past, -ing, Chinese verb phrase).
ACTIVITIES = (
    ("play football", "plays football", "played football", "playing football", "踢足球"),
    ("play the piano", "plays the piano", "played the piano", "playing the piano", "弹钢琴"),
    ("play chess", "plays chess", "played chess", "playing chess", "下棋"),
    ("read books", "reads books", "read books", "reading books", "看书"),
    ("write letters", "writes letters", "wrote letters", "writing letters", "写信"),
    ("draw pictures", "draws pictures", "drew pictures", "drawing pictures", "画画"),
    ("sing songs", "sings songs", "sang songs", "singing songs", "唱歌"),
    ("dance", "dances", "danced", "dancing", "跳舞"),
    ("swim", "swims", "swam", "swimming", "游泳"),
    ("cook dinner", "cooks dinner", "cooked dinner", "cooking dinner", "做晚饭"),
    ("go fishing", "goes fishing", "went fishing", "fishing", "钓鱼"),
    ("grow flowers", "grows flowers", "grew flowers", "growing flowers", "种花"),
    ("ride a bicycle", "rides a bicycle", "rode a bicycle", "riding a bicycle", "骑自行车"),
    ("watch films", "watches films", "watched films", "watching films", "看电影"),
    ("listen to music", "listens to music", "listened to music", "listening to music", "听音乐"),
    ("take photos", "takes photos", "took photos", "taking photos", "拍照"),
    ("learn English", "learns English", "learned English", "learning English", "学英语"),
    ("learn Chinese", "learns Chinese", "learned Chinese", "learning Chinese", "学中文"),
    ("run", "runs", "ran", "running", "跑步"),
    ("play basketball", "plays basketball", "played basketball", "playing basketball", "打篮球"),
    ("play table tennis", "plays table tennis", "played table tennis", "playing table tennis", "打乒乓球"),
    ("fly kites", "flies kites", "flew kites", "flying kites", "放风筝"),
    ("bake bread", "bakes bread", "baked bread", "baking bread", "烤面包"),
    ("write poems", "writes poems", "wrote poems", "writing poems", "写诗"),
    ("play the guitar", "plays the guitar", "played the guitar", "playing the guitar", "弹吉他"),
    ("study mathematics", "studies mathematics", "studied mathematics", "studying mathematics", "学数学"),
    ("drink tea", "drinks tea", "drank tea", "drinking tea", "喝茶"),
    ("do homework", "does homework", "did homework", "doing homework", "做作业"),
)

# Places inside a city: (English with preposition, English bare, Chinese).
PLACES = (
    ("in the park", "the park", "公园"), ("at the market", "the market", "市场"),
    ("in the library", "the library", "图书馆"), ("at school", "school", "学校"),
    ("at the hospital", "the hospital", "医院"), ("at the station", "the station", "火车站"),
    ("in the museum", "the museum", "博物馆"), ("in the garden", "the garden", "花园"),
    ("by the river", "the river", "河边"), ("on the beach", "the beach", "海边"),
    ("in a restaurant", "a restaurant", "饭馆"), ("in a shop", "a shop", "商店"),
    ("in the office", "the office", "办公室"), ("in the kitchen", "the kitchen", "厨房"),
    ("in the square", "the square", "广场"), ("at the zoo", "the zoo", "动物园"),
    ("at the cinema", "the cinema", "电影院"), ("in a bookshop", "a bookshop", "书店"),
    ("on a farm", "a farm", "农场"), ("at the harbour", "the harbour", "港口"),
    ("in a cafe", "a cafe", "咖啡馆"), ("at home", "home", "家里"),
)
# Places an activity is done at, by activity (kept plausible).
ACTIVITY_PLACES = {
    "play football": ("in the park", "at school", "in the square", "on the beach"),
    "play the piano": ("at home", "at school", "in a cafe"),
    "play chess": ("in the park", "at home", "in a cafe", "in the library"),
    "read books": ("in the library", "at home", "in the park", "in a cafe", "in a bookshop"),
    "write letters": ("at home", "in the office", "in a cafe"),
    "draw pictures": ("in the park", "at home", "by the river", "in the garden"),
    "sing songs": ("at home", "at school", "in the square", "in the park"),
    "dance": ("in the square", "at school", "at home"),
    "swim": ("by the river", "on the beach"),
    "cook dinner": ("at home", "in the kitchen"),
    "go fishing": ("by the river", "at the harbour"),
    "grow flowers": ("in the garden", "on a farm"),
    "ride a bicycle": ("in the park", "by the river", "in the square"),
    "watch films": ("at the cinema", "at home"),
    "listen to music": ("at home", "in a cafe", "in the park"),
    "take photos": ("in the park", "at the zoo", "by the river", "on the beach", "in the museum"),
    "learn English": ("at school", "in the library", "at home"),
    "learn Chinese": ("at school", "in the library", "at home"),
    "run": ("in the park", "by the river", "on the beach"),
    "play basketball": ("at school", "in the park"),
    "play table tennis": ("at school", "at home", "in the park"),
    "fly kites": ("in the park", "on the beach", "in the square"),
    "bake bread": ("at home", "in the kitchen"),
    "write poems": ("at home", "in a cafe", "by the river"),
    "play the guitar": ("at home", "in the park", "in a cafe"),
    "study mathematics": ("at school", "in the library", "at home"),
    "drink tea": ("in a cafe", "at home", "in the garden"),
    "do homework": ("at home", "in the library", "at school"),
}

# Transitive verbs for things: (base, past, Chinese).
THING_VERBS = (
    ("buy", "bought", "买"), ("find", "found", "找到"), ("see", "saw", "看见"), ("sell", "sold", "卖"),
    ("lose", "lost", "丢"), ("borrow", "borrowed", "借"), ("carry", "carried", "拿"),
)

# Past-time expressions: (English, Chinese).
PAST_TIMES = (
    ("Yesterday", "昨天"), ("Last week", "上个星期"), ("Last year", "去年"), ("This morning", "今天早上"),
    ("Last night", "昨天晚上"), ("On Monday", "星期一"), ("On Saturday", "星期六"), ("Last month", "上个月"),
    ("Two days ago", "两天前"), ("Last summer", "去年夏天"), ("Last winter", "去年冬天"),
)
# Habitual expressions: (English at sentence start, Chinese after the subject).
HABITS = (
    ("Every day", "每天"), ("Every morning", "每天早上"), ("Every evening", "每天晚上"),
    ("On weekends", "周末"), ("Every Sunday", "每个星期天"), ("In summer", "夏天"), ("In winter", "冬天"),
    ("After work", "下班以后"), ("After lunch", "午饭以后"),
)
# Frequency adverbs placed before the verb: (English, Chinese).
FREQUENCIES = (("often", "经常"), ("usually", "通常"), ("sometimes", "有时候"), ("always", "总是"))

FEELINGS = (
    ("happy", "很高兴"), ("tired", "很累"), ("hungry", "很饿"), ("excited", "很兴奋"),
    ("sad", "很难过"), ("surprised", "很惊讶"), ("calm", "很平静"), ("proud", "很自豪"),
)

# Spatial relations for scene sentences: (English preposition, Chinese locative after the noun).
LOCATIONS = (
    ("in", "里"), ("on", "上"), ("under", "下面"), ("next to", "旁边"), ("behind", "后面"), ("in front of", "前面"),
)

# Story connectives: (English, Chinese).
CONNECTIVES = (("Then", "然后"), ("After that", "之后"), ("Later", "后来"), ("Soon", "不久"))

# Words for simple word-level tasks.
WEEKDAYS = (
    ("Monday", "星期一"), ("Tuesday", "星期二"), ("Wednesday", "星期三"), ("Thursday", "星期四"),
    ("Friday", "星期五"), ("Saturday", "星期六"), ("Sunday", "星期天"),
)
SEASONS = (("spring", "春天"), ("summer", "夏天"), ("autumn", "秋天"), ("winter", "冬天"))
